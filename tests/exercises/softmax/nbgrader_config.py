"""nbgrader configuration of the softmax course (run nbgrader commands from this folder)."""

import os

c = get_config()  # type: ignore[name-defined] # noqa: F821  (injected by nbgrader)

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "softmax-course"
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.release_directory = "release"
