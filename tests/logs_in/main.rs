//! Logs ingestion, black box: Loki push (protobuf + snappy, JSON in both forms, every
//! compression) and OTLP logs (gRPC, HTTP protobuf and JSON) against a real server, every
//! refusal the write path makes, real clients (python-logging-loki, an independent Python
//! protobuf encoder, winston-loki, the OpenTelemetry Python SDK), a SIGKILL during a push load,
//! and seeded fuzzing of the decoders.

// Test cases are tables of tuples on purpose: one line a case.
#![allow(clippy::type_complexity)]

mod clients;
mod crash;
mod fuzz;
mod otlp;
mod push;
mod support;
