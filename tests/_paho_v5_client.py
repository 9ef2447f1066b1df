"""A paho-mqtt client in MQTT 5.0 mode, driven by tests/interop_paho_v5_test.ts.

Usage: _paho_v5_client.py PORT CLIENT_ID [MODE]

Connects with MQTTv5 (Clean Start, Session Expiry Interval 60, Receive Maximum 5, Topic Alias
Maximum 0), subscribes to paho5/# at QoS 2 with Subscription Identifier 7, prints READY, publishes
paho5/q1 at QoS 1 with user properties, content type, response topic, correlation data and a
message expiry, and paho5/q2 at QoS 2, and waits for three messages (its two and one the test
sends). Prints one JSON line with what happened, then disconnects. Works with paho-mqtt 1.6 and
2.x. Exits 3 on its own deadline.

MODE "leave": connect (Clean Start, Session Expiry Interval 60), subscribe paho5r/# at QoS 1,
disconnect normally (the session stays). MODE "resume": connect with Clean Start 0 and Session
Expiry Interval 60 and wait for one message (queued while away).
"""
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

DEADLINE_S = 10.0


def code(rc):
    return rc.value if hasattr(rc, "value") else int(rc)


def props_dict(p):
    if p is None:
        return {}
    out = {}
    for name in ("ContentType", "ResponseTopic", "MessageExpiryInterval", "PayloadFormatIndicator",
                 "SubscriptionIdentifier", "AssignedClientIdentifier", "ReceiveMaximum",
                 "TopicAliasMaximum", "MaximumPacketSize", "ServerKeepAlive", "TopicAlias"):
        if hasattr(p, name):
            out[name] = getattr(p, name)
    if hasattr(p, "UserProperty"):
        out["UserProperty"] = [list(kv) for kv in p.UserProperty]
    if hasattr(p, "CorrelationData"):
        out["CorrelationData"] = bytes(p.CorrelationData).hex()
    return out


def make_client(client_id):
    if hasattr(mqtt, "CallbackAPIVersion"):
        return mqtt.Client(mqtt.CallbackAPIVersion.VERSION1, client_id=client_id,
                           protocol=mqtt.MQTTv5)
    return mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv5)


def main():
    port = int(sys.argv[1])
    client_id = sys.argv[2]
    mode = sys.argv[3] if len(sys.argv) > 3 else "main"
    result = {"version": getattr(mqtt, "__version__", None) or "unknown", "messages": []}
    connected = threading.Event()
    subscribed = threading.Event()
    received_all = threading.Event()
    lock = threading.Lock()
    client = make_client(client_id)

    def on_connect(_client, _userdata, flags, rc, properties=None):
        result["connack"] = code(rc)
        result["sessionPresent"] = bool(flags.get("session present", 0))
        result["connackProperties"] = props_dict(properties)
        connected.set()

    def on_subscribe(_client, _userdata, _mid, reason_codes, _properties=None):
        result["granted"] = [code(rc) for rc in reason_codes]
        subscribed.set()

    def on_message(_client, _userdata, message):
        with lock:
            result["messages"].append({
                "topic": message.topic,
                "payload": message.payload.decode("utf-8"),
                "qos": message.qos,
                "properties": props_dict(getattr(message, "properties", None)),
            })
            if len(result["messages"]) >= (1 if mode == "resume" else 3):
                received_all.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message

    def finish(exit_code):
        print(json.dumps(result), flush=True)
        try:
            client.disconnect()
        finally:
            client.loop_stop()
        sys.exit(exit_code)

    end = time.monotonic() + DEADLINE_S
    left = lambda: max(0.0, end - time.monotonic())

    connect_props = Properties(PacketTypes.CONNECT)
    connect_props.SessionExpiryInterval = 60
    if mode == "main":
        connect_props.ReceiveMaximum = 5
    client.connect("127.0.0.1", port, keepalive=30, clean_start=(mode != "resume"),
                   properties=connect_props)
    client.loop_start()
    if not connected.wait(left()):
        result["error"] = "no CONNACK"
        finish(3)
    if result["connack"] != 0:
        finish(0)
    if mode == "resume":
        if not received_all.wait(left()):
            result["error"] = "no queued message"
            finish(3)
        finish(0)
    if mode == "leave":
        client.subscribe([("paho5r/#", SubscribeOptions(qos=1))])
        if not subscribed.wait(left()):
            result["error"] = "no SUBACK"
            finish(3)
        finish(0)

    sub_props = Properties(PacketTypes.SUBSCRIBE)
    sub_props.SubscriptionIdentifier = 7
    client.subscribe([("paho5/#", SubscribeOptions(qos=2))], properties=sub_props)
    if not subscribed.wait(left()):
        result["error"] = "no SUBACK"
        finish(3)
    print("READY", flush=True)

    pub_props = Properties(PacketTypes.PUBLISH)
    pub_props.UserProperty = [("z", "1"), ("a", "2"), ("z", "3")]
    pub_props.ContentType = "text/plain"
    pub_props.ResponseTopic = "paho5/reply"
    pub_props.CorrelationData = b"\x01\x02"
    pub_props.MessageExpiryInterval = 60
    infos = [
        client.publish("paho5/q1", "one", qos=1, properties=pub_props),
        client.publish("paho5/q2", "two", qos=2),
    ]
    for info in infos:
        info.wait_for_publish(left())
    result["published"] = [info.is_published() for info in infos]
    if not received_all.wait(left()):
        result["error"] = "fewer than three messages"
        finish(3)
    finish(0)


main()
