"""Generated protobuf/gRPC stubs of protos/adept/v1 (python protos/generate.py)."""
