"""A paho-mqtt client driven by tests/interop_paho_test.ts.

Usage: _paho_client.py PORT CLIENT_ID [USERNAME PASSWORD]

Connects (MQTT 3.1.1, clean session), subscribes to paho/# at QoS 2, prints READY, publishes
paho/q1 at QoS 1 and paho/q2 at QoS 2, and waits until it has received three messages (the two
of its own and one the test publishes from the broker's process). Prints one JSON line with what
happened, then disconnects. Works with paho-mqtt 1.6 and 2.x. Exits 3 on its own deadline.
"""
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt

DEADLINE_S = 10.0


def make_client(client_id):
    # paho-mqtt 2.x needs the callback API version; VERSION1 keeps the 1.6 callback signatures.
    if hasattr(mqtt, "CallbackAPIVersion"):
        return mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION1,
            client_id=client_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
    return mqtt.Client(client_id=client_id, clean_session=True, protocol=mqtt.MQTTv311)


def main():
    port = int(sys.argv[1])
    client_id = sys.argv[2]
    result = {"version": getattr(mqtt, "__version__", None) or "unknown", "messages": []}
    connected = threading.Event()
    subscribed = threading.Event()
    received_all = threading.Event()
    lock = threading.Lock()

    client = make_client(client_id)
    if len(sys.argv) >= 5:
        client.username_pw_set(sys.argv[3], sys.argv[4])

    def on_connect(_client, _userdata, flags, rc):
        result["connack"] = rc
        result["sessionPresent"] = bool(flags.get("session present", 0))
        connected.set()

    def on_subscribe(_client, _userdata, mid, granted_qos):
        result["granted"] = list(granted_qos)
        subscribed.set()

    def on_message(_client, _userdata, message):
        with lock:
            result["messages"].append({
                "topic": message.topic,
                "payload": message.payload.decode("utf-8"),
                "qos": message.qos,
                "retain": bool(message.retain),
            })
            if len(result["messages"]) >= 3:
                received_all.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message

    def finish(code):
        print(json.dumps(result), flush=True)
        try:
            client.disconnect()
        finally:
            client.loop_stop()
        sys.exit(code)

    end = time.monotonic() + DEADLINE_S
    left = lambda: max(0.0, end - time.monotonic())

    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    if not connected.wait(left()):
        result["error"] = "no CONNACK"
        finish(3)
    if result["connack"] != 0:
        finish(0)

    client.subscribe([("paho/#", 2)])
    if not subscribed.wait(left()):
        result["error"] = "no SUBACK"
        finish(3)
    print("READY", flush=True)

    infos = [client.publish("paho/q1", "one", qos=1), client.publish("paho/q2", "two", qos=2)]
    for info in infos:
        info.wait_for_publish(left())
    # True once PUBACK (QoS 1) and PUBCOMP (QoS 2) came back.
    result["published"] = [info.is_published() for info in infos]
    if not received_all.wait(left()):
        result["error"] = "fewer than three messages"
        finish(3)
    finish(0)


main()
