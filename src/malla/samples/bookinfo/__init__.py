"""Istio's Bookinfo application, one module per service, behaving as Istio's images do.

    productpage  ->  details               (book details)
                 ->  reviews v1|v2|v3  ->  ratings   (v2 black stars, v3 red stars)

Run one with ``python -m malla.samples.bookinfo.<service> [port]``. Each
listens on the port given as argument, else ``$PORT``, else 9080, on
``$BIND_ADDRESS`` (default ``127.0.0.1``: a sidecar reaches the app over
loopback, and nothing on the network can go around it).

Callers find their peers as Istio's images do: ``http://<NAME>_HOSTNAME
[.SERVICES_DOMAIN]:<NAME>_SERVICE_PORT`` with the names ``details``,
``reviews`` and ``ratings`` and port 9080 by default. Requests go through
``HTTP_PROXY``/``http_proxy`` when set (what ``malla run`` does) and straight
to the peer otherwise; ``NO_PROXY`` is honoured.

Every service forwards the tracing and context headers of the request it
serves to the requests it makes (``_http.PROPAGATED_HEADERS``), so that the
sidecars' spans join into one trace and header-based routing (``end-user:
jason``) keeps working one hop further.
"""
