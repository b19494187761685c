"""The CA's gRPC face: Istio's `IstioCertificateService` over TLS (Istio's `server/ca`).

In: `IstioCertificateRequest{csr, validity_duration, metadata}` and a
credential. Out: `IstioCertificateResponse{cert_chain}`: leaf, intermediates,
and the trust bundle last (Istio's layout; the bundle holds two roots during
a root rotation).

Who the caller is comes from its credential, never from the CSR:
- on the mTLS port (default 15012) the client must present a certificate that
  chains to the trust bundle; its one SPIFFE URI SAN is the identity
  (renewals);
- on the join port (default 15013; TLS, the server authenticates itself only)
  the caller sends `authorization: Bearer <join token>` (first certificate).
  A token for any service account (`*`) needs `metadata.serviceAccount`.
Two ports because Python's gRPC can either require a client certificate or
not ask for one; it cannot ask and accept its absence as Go's
`VerifyClientCertIfGiven` does.

The serving certificate (DNS/IP SANs of `serving_hosts`) is signed by the CA
itself and re-issued at half-life, or as soon as the signing CA or the trust
bundle changes: gRPC asks for the current one at every handshake. Inside
``malla up`` it also names ``CONTROL_PLANE_SAN``, the name agents on other
hosts check whatever address they dial (workload certificates carry only a
SPIFFE URI, so no workload can pass for the control plane). Both ports also
serve the trust bundle to anyone (``malla.ca.discovery``), and a control
plane can serve the same certificate handler and credentials on a server of
its own (``handler()``, ``credentials()``: istiod's 15012, with ADS beside).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import timedelta

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from malla.ca import material as files
from malla.ca.authority import (
    DEFAULT_TTL,
    CAError,
    CertificateAuthority,
    CSRError,
    IdentityMismatchError,
    IssuedCertificate,
)
from malla.ca.discovery import trust_bundle_handler
from malla.ca.messages import (
    FULL_METHOD,
    METHOD,
    SERVICE,
    IstioCertificateRequest,
    IstioCertificateResponse,
)
from malla.ca.spiffe import Identity, parse_spiffe_id
from malla.ca.tokens import JoinTokens, TokenError

_log = logging.getLogger(__name__)

DEFAULT_PORT = 15012
DEFAULT_JOIN_PORT = 15013
DEFAULT_SERVING_HOSTS = ("localhost", "127.0.0.1")
# The control plane's name in its serving certificate, as istiod's discovery address.
CONTROL_PLANE_SAN = "istiod.istio-system.svc"
NAMESPACE_KEY = "namespace"
SERVICE_ACCOUNT_KEY = "serviceAccount"


class AuthenticationError(Exception):
    """The caller presented no usable credential."""


class CertificateRequestError(RuntimeError):
    """The CA refused or could not be reached; `code` is the gRPC status."""

    def __init__(self, message: str, *, code: grpc.StatusCode) -> None:
        super().__init__(message)
        self.code = code


def identity_from_certificate(pem: bytes | str, *, trust_domain: str) -> Identity:
    """The identity a verified client certificate proves: its one SPIFFE URI SAN."""
    cert = x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise AuthenticationError("a CA certificate cannot act as a workload")
    except x509.ExtensionNotFound:
        pass
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = x509.SubjectAlternativeName([])
    uris = [uri for uri in sans.get_values_for_type(x509.UniformResourceIdentifier)
            if uri.startswith("spiffe://")]
    if len(uris) != 1:
        raise AuthenticationError(f"the client certificate carries {len(uris)} SPIFFE IDs; "
                                  "a workload certificate has exactly one")
    try:
        identity = parse_spiffe_id(uris[0])
    except ValueError as exc:
        raise AuthenticationError(str(exc)) from None
    if identity.trust_domain != trust_domain:
        raise AuthenticationError(f"the client certificate is for trust domain "
                                  f"{identity.trust_domain!r}, not {trust_domain!r}")
    return identity


class CertificateService:
    """Authenticates a request and has the authority sign it (transport-agnostic core)."""

    def __init__(self, authority: CertificateAuthority, *, tokens: JoinTokens | None) -> None:
        self.authority = authority
        self.tokens = tokens

    def caller_identity(self, request: object, *, peer_cert: bytes | None,
                        bearer: str | None) -> Identity:
        asked_ns, asked_sa = _asked(request)
        trust_domain = self.authority.trust_domain
        if peer_cert is not None:
            identity = identity_from_certificate(peer_cert, trust_domain=trust_domain)
            if asked_ns not in (None, identity.namespace) or asked_sa not in (
                    None, identity.service_account):
                raise IdentityMismatchError(
                    f"metadata asks for namespace {asked_ns!r}, service account {asked_sa!r}, "
                    f"but the client certificate proves {identity.uri}")
            return identity
        if bearer is None:
            raise AuthenticationError("no credential: send 'authorization: Bearer <join token>' "
                                      "or connect with the current workload certificate (mTLS)")
        if self.tokens is None:
            raise AuthenticationError("this CA accepts no join tokens; renew over mTLS")
        claims = self.tokens.verify(bearer, namespace=asked_ns)
        return claims.identity_for(asked_sa, trust_domain=trust_domain)

    def create(self, request: object, *, peer_cert: bytes | None,
               bearer: str | None) -> IssuedCertificate:
        identity = self.caller_identity(request, peer_cert=peer_cert, bearer=bearer)
        ttl = getattr(request, "validity_duration", 0) or None
        issued = self.authority.sign_csr(getattr(request, "csr", ""), identity=identity, ttl=ttl)
        cert = issued.certificate
        _log.info("issued %s, serial %x, valid until %s (%s)", identity.uri, cert.serial_number,
                  cert.not_valid_after_utc.isoformat(), "mTLS renewal" if peer_cert else "join token")
        return issued


def _asked(request: object) -> tuple[str | None, str | None]:
    metadata = getattr(request, "metadata", None)
    fields = metadata.fields if metadata is not None else {}
    def text(key: str) -> str | None:
        value = fields.get(key)
        return value.string_value or None if value is not None else None
    return text(NAMESPACE_KEY), text(SERVICE_ACCOUNT_KEY)


def _bearer(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key.lower() == "authorization":
            scheme, _, token = str(value).partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def peer_certificate(context: grpc.aio.ServicerContext) -> bytes | None:
    """The client certificate (PEM) gRPC verified on this call; None without mTLS."""
    found = context.auth_context().get("x509_pem_cert")
    return found[0] if found else None


class _ServingCredentials:
    """The CA's own TLS certificate, re-issued when stale; gRPC fetches it per handshake."""

    def __init__(self, authority: CertificateAuthority, *, hosts: Sequence[str],
                 ttl: timedelta) -> None:
        self._authority = authority
        self._hosts = tuple(hosts)
        self._ttl = ttl
        self._lock = threading.Lock()
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._issued_for: tuple[object, bytes] | None = None
        self._renew_at = 0.0
        self._config: grpc.ServerCertificateConfiguration | None = None

    def current(self) -> grpc.ServerCertificateConfiguration:
        config = self._fetch_new()
        assert self._config is not None
        return config or self._config

    def _fetch_new(self) -> grpc.ServerCertificateConfiguration | None:
        """None when the current configuration is still good (gRPC's fetcher contract)."""
        authority = self._authority
        material = authority.material
        key = (material.ca_cert, authority.trust_bundle_pem())
        now = authority.clock().timestamp()
        with self._lock:
            if self._config is not None and self._issued_for == key and now < self._renew_at:
                return None
            issued = authority.issue_server_certificate(self._key.public_key(), hosts=self._hosts,
                                                        ttl=self._ttl)
            cert = issued.certificate
            lifetime = cert.not_valid_after_utc.timestamp() - now
            self._renew_at = now + lifetime / 2
            self._issued_for = key
            self._config = grpc.ssl_server_certificate_configuration(
                [(files.key_pem(self._key), issued.chain_pem())],
                root_certificates=key[1])
            return self._config

    def credentials(self, *, require_client_certificate: bool) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self.current(), self._safe_fetch,
            require_client_authentication=require_client_certificate)

    def _safe_fetch(self) -> grpc.ServerCertificateConfiguration | None:
        try:
            return self._fetch_new()
        except Exception:  # a failing fetch must not break handshakes: keep the old one
            _log.exception("could not renew the CA's serving certificate; keeping the current one")
            return None


class CAServer:
    """`IstioCertificateService` on an mTLS port and a join (token) port."""

    def __init__(self, authority: CertificateAuthority, *, tokens: JoinTokens | None,
                 serving_hosts: Sequence[str] = DEFAULT_SERVING_HOSTS,
                 serving_ttl: timedelta = DEFAULT_TTL) -> None:
        self.service = CertificateService(authority, tokens=tokens)
        self._serving = _ServingCredentials(authority, hosts=serving_hosts, ttl=serving_ttl)
        self._server: grpc.aio.Server | None = None
        self.port: int | None = None
        self.join_port: int | None = None

    async def start(self, *, host: str = "127.0.0.1", port: int | None = DEFAULT_PORT,
                    join_port: int | None = DEFAULT_JOIN_PORT) -> None:
        """Listen; `port` (mTLS) and/or `join_port` (tokens); 0 picks a free port."""
        if port is None and join_port is None:
            raise ValueError("start: give port (mTLS), join_port (join tokens), or both")
        server = grpc.aio.server()
        authority = self.service.authority
        server.add_generic_rpc_handlers((self.handler(), trust_bundle_handler(authority.trust_bundle_pem)))
        bind_host = f"[{host}]" if ":" in host else host
        if port is not None:
            self.port = self._bind(server, f"{bind_host}:{port}", mtls=True)
        if join_port is not None:
            self.join_port = self._bind(server, f"{bind_host}:{join_port}", mtls=False)
        await server.start()
        self._server = server
        _log.info("CA listening: mTLS port %s, join port %s", self.port, self.join_port)

    def handler(self) -> grpc.GenericRpcHandler:
        """`IstioCertificateService`, for this server or another one (any event loop)."""
        method = grpc.unary_unary_rpc_method_handler(
            self._create_certificate, request_deserializer=IstioCertificateRequest.FromString,
            response_serializer=IstioCertificateResponse.SerializeToString)
        return grpc.method_handlers_generic_handler(SERVICE, {METHOD: method})

    def credentials(self, *, require_client_certificate: bool) -> grpc.ServerCredentials:
        """TLS with the CA's serving certificate; with a client certificate required, mTLS."""
        return self._serving.credentials(require_client_certificate=require_client_certificate)

    def _bind(self, server: grpc.aio.Server, address: str, *, mtls: bool) -> int:
        creds = self.credentials(require_client_certificate=mtls)
        try:
            bound = server.add_secure_port(address, creds)
        except RuntimeError:  # gRPC's bind failure says nothing useful
            bound = 0
        if bound == 0:
            what = "mTLS port" if mtls else "join port"
            raise OSError(f"the CA cannot listen on {address} ({what}); is the port in use? "
                          "Choose another port")
        return bound

    async def stop(self, *, grace: float = 1.0) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    async def _create_certificate(self, request: object,
                                  context: grpc.aio.ServicerContext) -> object:
        try:
            issued = self.service.create(request, peer_cert=peer_certificate(context),
                                         bearer=_bearer(context))
        except (AuthenticationError, TokenError) as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        except IdentityMismatchError as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        except (CSRError, ValueError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except CAError as exc:
            _log.error("the CA could not sign: %s", exc)
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return IstioCertificateResponse(cert_chain=issued.cert_chain())


async def request_certificate(address: str, csr_pem: bytes | str, *, ca_bundle: bytes,
                              token: str | None = None, cert_chain: bytes | None = None,
                              key: bytes | None = None, ttl: float | None = None,
                              namespace: str | None = None, service_account: str | None = None,
                              server_name: str | None = None,
                              timeout: float = 10.0) -> list[str]:
    """Ask the CA at `address` to sign `csr_pem`; returns Istio's `cert_chain`.

    Authenticate with `token` (join port) or `cert_chain` + `key` (mTLS port).
    `ca_bundle` verifies the CA's serving certificate; `server_name` overrides
    the name checked against it (default: the host in `address`).
    """
    if (cert_chain is None) != (key is None):
        raise ValueError("cert_chain and key: give both (mTLS) or neither")
    if token is None and cert_chain is None:
        raise ValueError("give token= (join) or cert_chain= and key= (renewal over mTLS)")
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_bundle, private_key=key,
                                               certificate_chain=cert_chain)
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    request = IstioCertificateRequest(
        csr=csr_pem.decode() if isinstance(csr_pem, bytes) else csr_pem,
        validity_duration=int(ttl or 0))
    asked = {k: v for k, v in ((NAMESPACE_KEY, namespace), (SERVICE_ACCOUNT_KEY, service_account))
             if v}
    if asked:
        request.metadata.update(asked)
    metadata = (("authorization", f"Bearer {token}"),) if token and cert_chain is None else None
    async with grpc.aio.secure_channel(address, credentials, options=options) as channel:
        call = channel.unary_unary(FULL_METHOD,
                                   request_serializer=IstioCertificateRequest.SerializeToString,
                                   response_deserializer=IstioCertificateResponse.FromString)
        try:
            response = await call(request, metadata=metadata, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise CertificateRequestError(
                f"the CA at {address} answered {exc.code().name}: {exc.details()}",
                code=exc.code()) from None
    return list(response.cert_chain)
