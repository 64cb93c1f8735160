"""Where the tests' data lives (one definition for every test module)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
HOTPOT = FIXTURES / "hotpotqa_dev_slice.json"
TWOWIKI = FIXTURES / "2wiki_dev_slice.json"
# The quickstart's real HotpotQA questions (4 short paragraphs each); train and dev do not overlap.
QUICKSTART_TRAIN = ROOT / "configs" / "quickstart" / "hotpotqa_train.json"
QUICKSTART_DEV = ROOT / "configs" / "quickstart" / "hotpotqa_dev.json"
