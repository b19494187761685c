"""Steady client traffic for the tests: GET $LOAD_URL in a loop through the sidecar (plain urllib).

One line per request in $LOAD_LOG: ``200 <body>`` or ``ERR <what>``. It stops
when the file $LOAD_STOP exists and exits 0.
"""

import os
import time
import urllib.error
import urllib.request

url, log, stop = os.environ["LOAD_URL"], os.environ["LOAD_LOG"], os.environ["LOAD_STOP"]
with open(log, "a", buffering=1) as out:
    while not os.path.exists(stop):
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                out.write(f"{resp.status} {resp.read().decode().strip()}\n")
        except urllib.error.HTTPError as exc:
            out.write(f"ERR {exc.code} {exc.read().decode(errors='replace').strip()[:200]}\n")
        except OSError as exc:
            out.write(f"ERR {exc}\n")
        time.sleep(0.01)
