"""`.env.example` documents every setting the platform reads."""

from pathlib import Path

import config

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_in_env_example() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    documented = {
        line.split("=", 1)[0] for line in lines if "=" in line and not line.startswith("#")
    }
    missing = sorted(
        name.upper() for name in config.Settings.model_fields if name.upper() not in documented
    )
    assert missing == [], f"add to .env.example: {missing}"
