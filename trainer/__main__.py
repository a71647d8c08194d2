"""``python -m trainer ...`` is ``salt ...``."""

from trainer.cli import main

if __name__ == "__main__":
    main()
