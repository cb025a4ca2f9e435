"""nbgrader configuration for the course (run nbgrader commands from this folder).

One configuration serves every assignment: each is a folder of `source/` (`attention`,
`kv_cache`), released into the folder of the same name under `release/` by
`nbgrader generate_assignment NAME --force`.
"""

import os

c = get_config()  # type: ignore[name-defined] # noqa: F821  (injected by nbgrader)

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "ml-systems"
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.release_directory = "release"
