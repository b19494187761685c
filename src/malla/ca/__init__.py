"""Citadel: the mesh's certificate authority (Istio's `security/pkg/pki/ca` and `server/ca`).

What comes in: CSRs from agents, each with a credential that proves who the
caller is (a join token minted by the control plane, or the caller's current
mesh certificate over mTLS). What goes out: SPIFFE X.509-SVIDs (leaf, any
intermediates, and the trust bundle last, as Istio's `cert_chain` has it).

Layers, inside out:
- `spiffe`: SPIFFE IDs (`spiffe://<trust-domain>/ns/<ns>/sa/<sa>`): format, parse.
- `material`: CA files under Istio's names (`root-cert.pem`, `ca-cert.pem`,
  `ca-key.pem`, `cert-chain.pem`), checked on load; the self-signed root.
- `authority`: signing (SPIFFE X.509-SVID rules, TTLs) and root rotation.
  No transport, clock injected.
- `tokens`: join tokens (HMAC-signed, namespace + service account + expiry),
  with hints for an agent on another host (the roots' hashes, the join port).
- `discovery`: how that agent learns the roots, pinned by the token's hashes.
- `messages`: Istio's `IstioCertificateRequest/Response`, built at run time.
- `service`: the grpc.aio `IstioCertificateService` on an mTLS port (15012,
  renewals) and a join port (15013, tokens), and `request_certificate`; its
  handler and credentials also serve on the control plane's own 15012.
- `runner`: the CA of a home directory, served from a thread of its own.
- `plugin_watch`: replaced CA files installed while running, once complete
  and consistent; refused sets are reported, the old material keeps signing.
"""
