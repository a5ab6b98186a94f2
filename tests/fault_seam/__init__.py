"""Test-only seams into the production jobs (a package, so that ``ray job submit`` can carry it as a
``py_modules`` entry: the job submission client uploads directories only)."""
