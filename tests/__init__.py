"""The test suite is a package: test files in different folders may share a basename (pytest
names them by their dotted path) and import ``tests.helpers``."""
