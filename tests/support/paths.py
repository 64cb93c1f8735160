"""Where the tests' data lives (one definition for every test module)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
HOTPOT = FIXTURES / "hotpotqa_dev_slice.json"
TWOWIKI = FIXTURES / "2wiki_dev_slice.json"
