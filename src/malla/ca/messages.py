"""Istio's certificate API messages, built at run time (no generated code to keep in sync).

Istio's `security/v1alpha1/ca.proto` (package `istio.v1.auth`):
`IstioCertificateRequest{csr = 1, subject_id = 2, validity_duration = 3
(seconds), metadata = 4 (google.protobuf.Struct)}` and
`IstioCertificateResponse{repeated cert_chain = 1}` (leaf first, the trust
bundle last), served as `IstioCertificateService/CreateCertificate`. The
descriptors live in a private pool, so they never clash with another copy.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, struct_pb2

PACKAGE = "istio.v1.auth"
SERVICE = f"{PACKAGE}.IstioCertificateService"
METHOD = "CreateCertificate"
FULL_METHOD = f"/{SERVICE}/{METHOD}"

_Field = descriptor_pb2.FieldDescriptorProto


def _file() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(
        name="security/v1alpha1/ca.proto", package=PACKAGE, syntax="proto3",
        dependency=["google/protobuf/struct.proto"])
    request = proto.message_type.add(name="IstioCertificateRequest")
    request.field.add(name="csr", number=1, type=_Field.TYPE_STRING, label=_Field.LABEL_OPTIONAL)
    request.field.add(name="subject_id", number=2, type=_Field.TYPE_STRING,
                      label=_Field.LABEL_OPTIONAL)
    request.field.add(name="validity_duration", number=3, type=_Field.TYPE_INT64,
                      label=_Field.LABEL_OPTIONAL)
    request.field.add(name="metadata", number=4, type=_Field.TYPE_MESSAGE,
                      label=_Field.LABEL_OPTIONAL, type_name=".google.protobuf.Struct")
    response = proto.message_type.add(name="IstioCertificateResponse")
    response.field.add(name="cert_chain", number=1, type=_Field.TYPE_STRING,
                       label=_Field.LABEL_REPEATED)
    service = proto.service.add(name="IstioCertificateService")
    service.method.add(name=METHOD, input_type=f".{PACKAGE}.IstioCertificateRequest",
                       output_type=f".{PACKAGE}.IstioCertificateResponse")
    return proto


def _build() -> tuple[type, type]:
    pool = descriptor_pool.DescriptorPool()
    struct_file = descriptor_pb2.FileDescriptorProto()
    struct_pb2.DESCRIPTOR.CopyToProto(struct_file)
    pool.Add(struct_file)
    pool.Add(_file())
    request = message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"{PACKAGE}.IstioCertificateRequest"))
    response = message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"{PACKAGE}.IstioCertificateResponse"))
    return request, response


IstioCertificateRequest, IstioCertificateResponse = _build()
