//! Traces in and trace by ID, black box: OTLP traces over gRPC and HTTP (protobuf, JSON, gzip)
//! against a real server with every field checked on the way back through Tempo's
//! `/api/traces/{id}` and `/api/v2/traces/{id}` in both encodings, every refusal, tenancy and
//! self-metrics, the OpenTelemetry Python SDK over both transports, a SIGKILL during an export
//! load, the `tripod-load traces` tool, and seeded fuzzing of the decoders.

// Test cases are tables of tuples on purpose: one line a case.
#![allow(clippy::type_complexity)]

mod clients;
mod crash;
mod fuzz;
mod load;
mod otlp;
mod support;
mod trace_by_id;
