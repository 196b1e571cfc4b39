"""`python -m scaleflow ...`: the same command line as `scaleflow ...`."""
from scaleflow.cli.main import main

if __name__ == "__main__":
    main()
