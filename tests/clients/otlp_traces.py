"""Exports the todo-backend trace of the seed scenario with the OpenTelemetry Python SDK to an
OTLP endpoint, then prints on stdout, as one JSON document, every span the exporter sent, in
the canonical form the Rust tests compare with (attributes sorted by key, values tagged with
their type).

The trace: POST /api/todos [15ms] > create_todo [12ms] > (validation [1ms], todo_creation [8ms],
metrics_update [2ms]), and response_send [1ms]; service tp2devops-backend. Attributes of every
type the SDK takes, events, links (to another trace and within the trace), a trace state from
the sampler, an error status on metrics_update, spans of two instrumentation scopes.

usage: otlp_traces.py grpc|http ENDPOINT TRACE_ID_HEX
Exits 0 when every export succeeded.
"""
import json
import sys
import time

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import (Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags,
                                 TraceState, set_span_in_context, get_current_span)

KINDS = {
    SpanKind.INTERNAL: "SPAN_KIND_INTERNAL",
    SpanKind.SERVER: "SPAN_KIND_SERVER",
    SpanKind.CLIENT: "SPAN_KIND_CLIENT",
    SpanKind.PRODUCER: "SPAN_KIND_PRODUCER",
    SpanKind.CONSUMER: "SPAN_KIND_CONSUMER",
}


class FixedIds(IdGenerator):
    """The trace ID given on the command line; span IDs counted from it."""

    def __init__(self, trace_id):
        self.trace_id = trace_id
        self.next_span = (trace_id & 0xFFFFFFFF) << 32

    def generate_trace_id(self):
        return self.trace_id

    def generate_span_id(self):
        self.next_span += 1
        return self.next_span


class TraceStateSampler(Sampler):
    """Samples everything; roots get a trace state, children keep their parent's."""

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None):
        parent = get_current_span(parent_context).get_span_context()
        if parent is not None and parent.is_valid:
            state = parent.trace_state
        else:
            state = TraceState([("tp2devops", "t61rcWkgMzE")])
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, state)

    def get_description(self):
        return "TraceStateSampler"


class Recorder:
    """Wraps the exporter to remember what it sent and whether every export succeeded."""

    def __init__(self, exporter):
        self.exporter = exporter
        self.failed = False
        self.sent = []

    def export(self, batch):
        result = self.exporter.export(batch)
        if result.name == "SUCCESS":
            self.sent.extend(batch)
        else:
            self.failed = True
        return result

    def shutdown(self):
        self.exporter.shutdown()

    def force_flush(self, timeout_millis=30000):
        return True


def tagged(value):
    if isinstance(value, bool):
        return {"bool": value}
    if isinstance(value, int):
        return {"int": value}
    if isinstance(value, float):
        return {"double": value}
    if isinstance(value, str):
        return {"string": value}
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, (list, tuple)):
        return {"array": [tagged(v) for v in value]}
    raise TypeError(f"unexpected attribute value {value!r}")


def attributes(attrs):
    return [[key, tagged(attrs[key])] for key in sorted(attrs or {})]


def flags(context):
    # What the OTLP exporter writes: the "has is-remote" bit, and "is remote" when it is.
    return 0x100 | (0x200 if context is not None and context.is_remote else 0)


def canonical(span):
    context = span.get_span_context()
    scope = span.instrumentation_scope
    return {
        "resource": attributes(span.resource.attributes),
        "resourceDroppedAttributesCount": 0,
        "resourceSchemaUrl": span.resource.schema_url or "",
        "scope": {"name": scope.name, "version": scope.version or "",
                  "attributes": attributes(getattr(scope, "attributes", None)), "droppedAttributesCount": 0},
        "scopeSchemaUrl": scope.schema_url or "",
        "traceId": format(context.trace_id, "032x"),
        "spanId": format(context.span_id, "016x"),
        "parentSpanId": format(span.parent.span_id, "016x") if span.parent else "",
        "traceState": ",".join(f"{k}={v}" for k, v in context.trace_state.items()),
        "flags": flags(span.parent),
        "name": span.name,
        "kind": KINDS[span.kind],
        "startTimeUnixNano": span.start_time,
        "endTimeUnixNano": span.end_time,
        "attributes": attributes(span.attributes),
        "droppedAttributesCount": span.dropped_attributes,
        "events": [{"timeUnixNano": e.timestamp, "name": e.name, "attributes": attributes(e.attributes),
                    "droppedAttributesCount": e.dropped_attributes} for e in span.events],
        "droppedEventsCount": span.dropped_events,
        "links": [{"traceId": format(l.context.trace_id, "032x"), "spanId": format(l.context.span_id, "016x"),
                   "traceState": "", "attributes": attributes(l.attributes),
                   "droppedAttributesCount": l.dropped_attributes, "flags": flags(l.context)} for l in span.links],
        "droppedLinksCount": span.dropped_links,
        "status": {"code": span.status.status_code.value, "message": span.status.description or ""},
    }


def main():
    protocol, endpoint, trace_hex = sys.argv[1], sys.argv[2], sys.argv[3]
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        exporter = OTLPSpanExporter(endpoint=endpoint)
    recorder = Recorder(exporter)
    resource = Resource.create({
        "service.name": "tp2devops-backend",
        "service.namespace": "tp2devops",
        "service.version": "1.4.2",
        "deployment.environment": "test",
        "host.cpu.count": 4,
    })
    provider = TracerProvider(resource=resource, id_generator=FixedIds(int(trace_hex, 16)),
                              sampler=TraceStateSampler())
    provider.add_span_processor(SimpleSpanProcessor(recorder))
    http = provider.get_tracer("tp2devops.http", "1.2.0")
    todos = provider.get_tracer("tp2devops.todos", "0.3.1")

    ms = 1_000_000
    t0 = time.time_ns() - 60_000 * ms
    other_trace = SpanContext(trace_id=0x0AF7651916CD43DD8448EB211C80319C, span_id=0xB7AD6B7169203331,
                              is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))

    root = http.start_span("POST /api/todos", kind=SpanKind.SERVER, start_time=t0, links=[
        Link(other_trace, {"link.reason": "retry of an earlier request", "link.attempt": 2})
    ], attributes={
        "http.method": "POST",
        "http.route": "/api/todos",
        "http.status_code": 201,
        "http.request_content_length": 512,
        "http.duration_ratio": 0.75,
        "http.secure": False,
        "net.peer.ip": "10.0.3.17",
        "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64) \u00e9\u00e8 \U0001F600",
        "app.todo.tags": ["work", "urgent"],
        "app.todo.priorities": [3, 1, 2],
        "app.todo.weights": [0.5, 1.25],
        "app.todo.flags": [True, False, True],
    })
    root_context = set_span_in_context(root)
    create = todos.start_span("create_todo", context=root_context, kind=SpanKind.INTERNAL,
                              start_time=t0 + 1 * ms, attributes={"todo.id": 123, "todo.title": "buy milk"})
    create_context = set_span_in_context(create)
    validation = todos.start_span("validation", context=create_context, start_time=t0 + 2 * ms,
                                  attributes={"validation.rules": 4, "validation.passed": True})
    validation.add_event("rule checked", {"rule": "title_not_empty", "ok": True}, timestamp=t0 + 2 * ms + 500_000)
    validation.end(end_time=t0 + 3 * ms)
    creation = todos.start_span("todo_creation", context=create_context, kind=SpanKind.CLIENT,
                                start_time=t0 + 3 * ms, attributes={
                                    "db.system": "postgresql",
                                    "db.statement": "INSERT INTO todos (title) VALUES ($1) RETURNING id",
                                    "db.rows_affected": 1,
                                })
    creation.end(end_time=t0 + 11 * ms)
    metrics = todos.start_span("metrics_update", context=create_context, start_time=t0 + 11 * ms,
                               links=[Link(creation.get_span_context(), {"link.kind": "caused_by"})],
                               attributes={"metric.name": "tp2devops_todos_active", "metric.delta": 1.0})
    metrics.add_event("exception", {
        "exception.type": "TimeoutError",
        "exception.message": "push gateway timed out after 1000ms",
        "exception.escaped": False,
    }, timestamp=t0 + 12 * ms)
    metrics.add_event("retry scheduled", timestamp=t0 + 12 * ms + 100_000)
    metrics.set_status(Status(StatusCode.ERROR, "push gateway timed out"))
    metrics.end(end_time=t0 + 13 * ms)
    create.set_status(Status(StatusCode.OK))
    create.end(end_time=t0 + 13 * ms)
    send = http.start_span("response_send", context=root_context, start_time=t0 + 14 * ms,
                           attributes={"http.response_content_length": 87})
    send.end(end_time=t0 + 15 * ms)
    root.end(end_time=t0 + 15 * ms)

    provider.shutdown()
    spans = sorted((canonical(span) for span in recorder.sent), key=lambda s: s["spanId"])
    json.dump({"spans": spans}, sys.stdout)
    sys.exit(1 if recorder.failed else 0)


if __name__ == "__main__":
    main()
