"""Citadel: the mesh's certificate authority (Istio's `security/pkg/pki/ca` and `server/ca`).

What comes in: CSRs from agents, each with a credential that proves who the
caller is (a join token minted by the control plane, or the caller's current
mesh certificate over mTLS). What goes out: SPIFFE X.509-SVIDs (leaf, any
intermediates, and the trust bundle last, as Istio's `cert_chain` has it).

Layers, inside out:
- `spiffe`: SPIFFE IDs (`spiffe://<trust-domain>/ns/<ns>/sa/<sa>`): format, parse.
- `authority`: signing, CA material kept in a directory under Istio's file
  names (self-signed root made on first use, or plug-in material with an
  intermediate), root rotation. No transport, clock injected.
- `tokens`: join tokens (HMAC-signed, namespace + service account + expiry).
- `messages`: Istio's `IstioCertificateRequest/Response`, built at run time.
- `service`: the grpc.aio `IstioCertificateService` on TLS (default port
  15012) and the client helper `request_certificate`.
"""
