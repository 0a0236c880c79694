"""Exports two log records with the OpenTelemetry Python SDK to an OTLP endpoint, through the
standard logging module, inside a span with a fixed trace ID.

usage: otlp_logs.py grpc|http ENDPOINT
Exits 0 when the export succeeded.
"""
import logging
import sys

from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags


class Recorder:
    """Wraps the exporter to remember whether every export succeeded."""

    def __init__(self, exporter):
        self.exporter = exporter
        self.failed = False

    def export(self, batch):
        result = self.exporter.export(batch)
        if result.name != "SUCCESS":
            self.failed = True
        return result

    def shutdown(self):
        self.exporter.shutdown()

    def force_flush(self, timeout_millis=30000):
        return True


def main():
    protocol, endpoint = sys.argv[1], sys.argv[2]
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        exporter = OTLPLogExporter(endpoint=endpoint, insecure=True)
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        exporter = OTLPLogExporter(endpoint=endpoint)
    recorder = Recorder(exporter)
    resource = Resource.create({
        "service.name": "checkout",
        "service.namespace": "shop",
        "service.instance.id": "pod-1",
        "deployment.environment": "test",
    })
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(SimpleLogRecordProcessor(recorder))
    logger = logging.getLogger("tripod.tests")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(LoggingHandler(level=logging.INFO, logger_provider=provider))

    context = SpanContext(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span_id=0x00F067AA0BA902B7,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    with trace.use_span(NonRecordingSpan(context)):
        logger.info("order 17 placed", extra={"order.id": "17"})
    logger.warning("payment retried")

    provider.shutdown()
    sys.exit(1 if recorder.failed else 0)


if __name__ == "__main__":
    main()
