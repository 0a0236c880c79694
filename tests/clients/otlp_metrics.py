"""Exports a fixed set of metrics with the OpenTelemetry Python SDK to an OTLP endpoint.

usage: otlp_metrics.py grpc|http ENDPOINT
Exits 0 when the export succeeded.
"""
import sys

from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource


def main():
    protocol, endpoint = sys.argv[1], sys.argv[2]
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        exporter = OTLPMetricExporter(endpoint=endpoint, insecure=True)
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        exporter = OTLPMetricExporter(endpoint=endpoint)
    resource = Resource.create({
        "service.name": "checkout",
        "service.namespace": "shop",
        "service.instance.id": "pod-1",
        "deployment.environment": "test",
    })
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(resource=resource, metric_readers=[reader])
    meter = provider.get_meter("tripod.tests", "1.0")

    orders = meter.create_counter("orders.placed", unit="{order}", description="Orders placed.")
    orders.add(2, {"payment.method": "card"})
    orders.add(1, {"payment.method": "card"})
    orders.add(5, {"payment.method": "voucher"})

    duration = meter.create_histogram("http.server.duration", unit="ms", description="Request duration.")
    duration.record(12.5, {"http.route": "/api/orders"})
    duration.record(250, {"http.route": "/api/orders"})

    depth = meter.create_up_down_counter("queue.depth", description="Jobs waiting.")
    depth.add(7)
    depth.add(-3)

    meter.create_observable_gauge(
        "cpu.utilization", unit="1", callbacks=[lambda options: [Observation(0.42, {"cpu": "0"})]]
    )

    ok = provider.force_flush(timeout_millis=20_000)
    provider.shutdown()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
