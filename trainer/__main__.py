"""``python -m trainer ...`` is ``salt ...``."""

from shared.cli import main

if __name__ == "__main__":
    main()
