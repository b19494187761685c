"""``malla demo``: Istio's Bookinfo, running as a real mesh on this machine."""
