"""The test harness itself: the broker fixture is a real RabbitMQ that an
independent client (pika) can publish to and read back from. Later tests
rely on this to check the broker side of everything the gateway does."""


def test_rabbitmq_fixture_round_trips_a_message_with_pika(rabbitmq):
    conn = rabbitmq.connection()
    try:
        ch = conn.channel()
        ch.queue_declare("fixture.check", durable=False, auto_delete=True)
        ch.confirm_delivery()
        ch.basic_publish("", "fixture.check", b"\x00binary\xff",
                         mandatory=True)
        method, props, body = ch.basic_get("fixture.check", auto_ack=True)
        assert body == b"\x00binary\xff"
        assert method.routing_key == "fixture.check"
    finally:
        conn.close()


def test_redis_fixture_is_empty_per_test(redis_store):
    c = redis_store.client()
    assert c.dbsize() == 0
    c.set("leftover", "1")
