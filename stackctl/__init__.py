"""Operations on the dam inventory stack: bring it up and down, make its env files and
secrets, build or pull its images, wait for its health, back it up and restore it, benchmark
it, and run the portal without Docker. `python -m stackctl --help` lists the commands; the
Makefile's targets are one-line calls of them, and the test suites import the same modules."""
