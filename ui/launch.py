"""What `hybrid ui` runs: Streamlit, with nothing sent off the machine, serving `ui/app.py`.

python -m ui.launch run ui/app.py [streamlit options]
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    """Switch telemetry off, keep Streamlit from asking the internet for our address, run it."""
    from hybrid.privacy import disable_telemetry

    disable_telemetry()
    from streamlit import net_util
    from streamlit.web import cli as streamlit_cli

    # Serving on a wildcard address, Streamlit asks checkip.amazonaws.com for the machine's public
    # address (for its start-up banner and its CORS allow-list): an empty answer, remembered,
    # means "unknown" to both, and no request is made.
    net_util._external_ip = ""
    sys.argv = ["streamlit", *argv]
    streamlit_cli.main()


if __name__ == "__main__":
    main(sys.argv[1:])
