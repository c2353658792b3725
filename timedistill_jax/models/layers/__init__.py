"""Building blocks shared by the student and the teachers, each written once."""
