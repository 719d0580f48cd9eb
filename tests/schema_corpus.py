"""A corpus of JSON schemas of real-world shapes (API payloads, records, configs, extraction targets),
for the structured-output tests: nested objects, arrays with min/max items, enums and consts,
``$ref``/``$defs`` with recursion, ``anyOf``, nullable types, patterns, formats, number bounds and
``multipleOf``, ``additionalProperties: false``.

``BASE`` holds the hand-written shapes; ``corpus()`` adds, for each, a strict variant (every property
required, no others) and a nullable variant, the way APIs publish the same record in several forms.
Strings carry ``maxLength`` where a real API would bound them, so a reply fits a test's token cap.
"""
from __future__ import annotations

import copy


def s(n: int = 24, **kw) -> dict:
    return {"type": "string", "maxLength": n, **kw}


def _bounded(kind: str, lo, hi, kw: dict) -> dict:
    d = {"type": kind, **kw}
    d.update({k: v for k, v in (("minimum", lo), ("maximum", hi)) if v is not None})
    return d


def i(lo: int | None = None, hi: int | None = None, **kw) -> dict:
    return _bounded("integer", lo, hi, kw)


def num(lo=None, hi=None, **kw) -> dict:
    return _bounded("number", lo, hi, kw)


def obj(props: dict, required: list | None = None, closed: bool = True, **kw) -> dict:
    d = {"type": "object", "properties": props, "required": list(props) if required is None else required}
    if closed:
        d["additionalProperties"] = False
    d.update(kw)
    return d


def arr(items: dict, lo: int = 0, hi: int = 3, **kw) -> dict:
    return {"type": "array", "items": items, "minItems": lo, "maxItems": hi, **kw}


def enum(*values) -> dict:
    return {"enum": list(values)}


BOOL = {"type": "boolean"}
EMAIL = {"type": "string", "format": "email", "maxLength": 40}
UUID = {"type": "string", "format": "uuid"}
DATE = {"type": "string", "format": "date"}
DATETIME = {"type": "string", "format": "date-time"}
TIME = {"type": "string", "format": "time"}
IPV4 = {"type": "string", "format": "ipv4"}
URI = {"type": "string", "format": "uri", "maxLength": 60}

BASE: dict[str, dict] = {
    "person": obj({"name": s(), "age": i(0, 130), "email": EMAIL}),
    "user_account": obj({"id": UUID, "username": s(16, pattern="^[a-z][a-z0-9_]{2,15}$"),
                         "created_at": DATETIME, "active": BOOL}),
    "address": obj({"street": s(40), "city": s(), "postal_code": s(10, pattern="^[0-9]{5}$"),
                    "country": s(2, pattern="^[A-Z]{2}$")}),
    "geo_point": obj({"lat": num(-90, 90), "lon": num(-180, 180)}),
    "product": obj({"sku": s(12, pattern="^[A-Z]{3}-[0-9]{4}$"), "name": s(30), "price": num(0, 10000),
                    "currency": enum("USD", "EUR", "GBP"), "in_stock": BOOL}),
    "order_line": obj({"sku": s(12), "quantity": i(1, 99), "unit_price": num(0, 1000, multipleOf=0.01)}),
    "order": obj({"order_id": s(12), "lines": arr(obj({"sku": s(12), "quantity": i(1, 9)}), 1, 3),
                  "status": enum("pending", "paid", "shipped", "cancelled")}),
    "invoice": obj({"number": i(1, 99999), "issued": DATE, "total": num(0, 1e6),
                    "paid": BOOL, "customer": obj({"name": s(), "email": EMAIL})}),
    "calendar_event": obj({"title": s(30), "date": DATE, "start": TIME, "attendees": arr(EMAIL, 0, 2)}),
    "weather_report": obj({"city": s(), "temperature_c": num(-60, 60), "condition":
                           enum("sunny", "cloudy", "rain", "snow", "storm"), "humidity": i(0, 100)}),
    "http_log": obj({"ip": IPV4, "method": enum("GET", "POST", "PUT", "DELETE"), "path": s(30),
                     "status": i(100, 599), "bytes": i(0)}),
    "server_config": obj({"host": s(), "port": i(1, 65535), "tls": BOOL,
                          "workers": i(1, 64, multipleOf=2)}),
    "feature_flag": obj({"key": s(20, pattern="^[a-z_]+$"), "enabled": BOOL, "rollout": i(0, 100, multipleOf=5)}),
    "sentiment": obj({"label": enum("positive", "negative", "neutral"), "score": num(0, 1)}),
    "classification": obj({"category": enum("bug", "feature", "question", "docs"),
                           "confidence": num(0, 1), "tags": arr(s(12), 0, 3)}),
    "entity_extraction": obj({"people": arr(s(), 0, 3), "places": arr(s(), 0, 3), "dates": arr(DATE, 0, 2)}),
    "qa_answer": obj({"answer": s(60), "sources": arr(URI, 0, 2)}),
    "book": obj({"title": s(40), "author": s(), "year": i(1450, 2030), "isbn": s(17, pattern="^[0-9-]{10,17}$")}),
    "movie": obj({"title": s(40), "year": i(1888, 2030), "genres": arr(enum("drama", "comedy", "action",
                  "horror", "sci-fi"), 1, 3), "rating": num(0, 10)}),
    "recipe": obj({"name": s(30), "servings": i(1, 12), "ingredients": arr(obj({"item": s(20),
                   "grams": i(1, 2000)}), 1, 3), "vegetarian": BOOL}),
    "contact_card": obj({"name": s(), "phone": s(16, pattern="^\\+?[0-9 ]{7,15}$"), "email": EMAIL}),
    "bank_transfer": obj({"iban": s(34, pattern="^[A-Z]{2}[0-9]{2}[A-Z0-9]{10,30}$"), "amount": num(0.01, 1e5),
                          "currency": {"const": "EUR"}, "reference": s(30)}),
    "shipment": obj({"tracking": s(20), "carrier": enum("UPS", "DHL", "FedEx", "USPS"),
                     "eta": DATE, "weight_kg": num(0, 500)}),
    "support_ticket": obj({"id": i(1), "subject": s(40), "priority": enum("low", "medium", "high", "urgent"),
                           "assignee": {"type": ["string", "null"], "maxLength": 20}}),
    "employee": obj({"name": s(), "title": s(), "department": enum("eng", "sales", "ops", "hr"),
                     "start_date": DATE, "manager": {"anyOf": [s(), {"type": "null"}]}}),
    "api_error": obj({"error": obj({"code": i(400, 599), "message": s(60), "retryable": BOOL})}),
    "pagination": obj({"page": i(1), "per_page": i(1, 100), "total": i(0), "items": arr(obj({"id": i(1)}), 0, 3)}),
    "color_palette": obj({"name": s(20), "colors": arr(s(7, pattern="^#[0-9a-f]{6}$"), 2, 4)}),
    "rgb": obj({"r": i(0, 255), "g": i(0, 255), "b": i(0, 255)}),
    "semver": obj({"major": i(0, 99), "minor": i(0, 99), "patch": i(0, 999),
                   "prerelease": {"type": ["string", "null"], "maxLength": 10}}),
    "package_manifest": obj({"name": s(20, pattern="^[a-z0-9-]+$"), "version": s(12, pattern="^[0-9]+\\.[0-9]+\\.[0-9]+$"),
                             "dependencies": arr(s(20), 0, 3), "private": BOOL}),
    "git_commit": obj({"sha": s(40, pattern="^[0-9a-f]{7,40}$"), "author": s(), "message": s(60), "date": DATETIME}),
    "sensor_reading": obj({"sensor_id": UUID, "value": num(-1000, 1000), "unit": enum("C", "F", "K", "%"),
                           "at": DATETIME}),
    "flight": obj({"flight": s(6, pattern="^[A-Z]{2}[0-9]{1,4}$"), "from": s(3, pattern="^[A-Z]{3}$"),
                   "to": s(3, pattern="^[A-Z]{3}$"), "departure": DATETIME}),
    "hotel_booking": obj({"hotel": s(30), "check_in": DATE, "nights": i(1, 30), "guests": i(1, 8),
                          "breakfast": BOOL}),
    "survey_response": obj({"respondent": UUID, "answers": arr(obj({"question": i(1, 20), "choice":
                            enum("a", "b", "c", "d")}), 1, 3)}),
    "todo_list": obj({"title": s(20), "items": arr(obj({"text": s(30), "done": BOOL}), 1, 3)}),
    "chat_message": obj({"role": enum("user", "assistant", "system"), "content": s(60)}),
    "tool_call_like": obj({"name": enum("get_weather", "search", "send_email"), "arguments": obj({"query": s(30)})}),
    "key_value": obj({"key": s(20), "value": {"anyOf": [s(20), i(), BOOL, {"type": "null"}]}}),
    "measurement": obj({"value": num(0, 100, multipleOf=0.5), "unit": {"const": "cm"}}),
    "percentages": obj({"cpu": i(0, 100), "memory": i(0, 100), "disk": i(0, 100)}),
    "exclusive_bounds": obj({"ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}}),
    "ip_allowlist": obj({"rules": arr(obj({"ip": IPV4, "allow": BOOL}), 1, 3)}),
    "yes_no": obj({"answer": enum("yes", "no"), "reason": s(40)}),
    "rating_review": obj({"stars": i(1, 5), "title": s(30), "body": s(80), "recommend": BOOL}),
    "time_slot": obj({"day": enum("mon", "tue", "wed", "thu", "fri"), "from": TIME, "to": TIME}),
    "matrix_2x2": obj({"rows": arr(arr(i(-9, 9), 2, 2), 2, 2)}),
    "tree": {"$ref": "#/$defs/node", "$defs": {"node": obj({"name": s(12), "children":
             arr({"$ref": "#/$defs/node"}, 0, 2)})}},
    "linked_list": {"$ref": "#/$defs/item", "$defs": {"item": obj({"value": i(0, 9), "next":
                    {"anyOf": [{"$ref": "#/$defs/item"}, {"type": "null"}]}})}},
    "org_chart_refs": {"type": "object", "additionalProperties": False, "required": ["ceo", "staff"],
                       "properties": {"ceo": {"$ref": "#/$defs/person"},
                                      "staff": {"type": "array", "items": {"$ref": "#/$defs/person"},
                                                "minItems": 1, "maxItems": 2}},
                       "$defs": {"person": obj({"name": s(), "role": s(16)})}},
    "shape_union": obj({"shape": {"anyOf": [obj({"kind": {"const": "circle"}, "radius": num(0, 100)}),
                                            obj({"kind": {"const": "square"}, "side": num(0, 100)})]}}),
    "payment_method": {"anyOf": [obj({"type": {"const": "card"}, "last4": s(4, pattern="^[0-9]{4}$")}),
                                 obj({"type": {"const": "paypal"}, "email": EMAIL})]},
    "optional_fields": obj({"name": s(), "nickname": s(12), "age": i(0, 120)}, required=["name"]),
    "open_object": {"type": "object", "properties": {"title": s(20)}, "required": ["title"],
                    "maxProperties": 3},
    "string_list": arr(s(16), 1, 4),
    "int_list": arr(i(0, 100), 1, 5),
    "enum_top": enum("red", "green", "blue"),
    "const_top": {"const": "ok"},
    "boolean_top": BOOL,
    "integer_top": i(1, 10),
    "nullable_number": {"type": ["number", "null"], "minimum": 0, "maximum": 5},
}


def _strict(schema: dict) -> dict:
    """Every object property required, no extra properties (OpenAI's strict mode shape)."""
    d = copy.deepcopy(schema)

    def walk(x):
        if isinstance(x, dict):
            if x.get("type") == "object" and "properties" in x:
                x["required"] = list(x["properties"])
                x["additionalProperties"] = False
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(d)
    return d


def _nullable(schema: dict) -> dict | None:
    """The record's first property made nullable (an API that may not know it)."""
    props = schema.get("properties")
    if not props:
        return None
    d = copy.deepcopy(schema)
    first = next(iter(d["properties"]))
    d["properties"][first] = {"anyOf": [d["properties"][first], {"type": "null"}]}
    return d


def corpus() -> dict[str, dict]:
    """Name -> schema: the base shapes, their strict forms (where they differ) and nullable forms."""
    out = dict(BASE)
    for name, schema in BASE.items():
        strict = _strict(schema)
        if strict != schema:
            out[f"{name}.strict"] = strict
        nullable = _nullable(schema)
        if nullable is not None:
            out[f"{name}.nullable"] = nullable
    return out
