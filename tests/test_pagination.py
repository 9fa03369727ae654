"""Cursor pagination, shared by every list: messages of fresh threads, and the shared assistants list."""

from __future__ import annotations

import pytest

from tests.spec import assert_list, assert_schema

N = 25  # more than the default page, all created within a second or two


@pytest.fixture(scope="module")
def thread_of_25(client):
    """A thread whose N messages were created in one request: they all share one created_at second
    (or two), so their order rests on the insertion-order tie-break."""
    t = client.beta.threads.create(messages=[{"role": "user", "content": f"m{i:02d}"} for i in range(N)])
    page = client.beta.threads.messages.list(t.id, order="asc", limit=100)
    ids = [m.id for m in page.data]
    assert len(ids) == N
    assert len({m.created_at for m in page.data}) < N  # ties on created_at really are there
    return t.id, ids


def ids_of(page) -> list[str]:
    return [item["id"] for item in page["data"]]


def get_list(http, path, **params):
    r = http.get(path, params=params)
    assert r.status_code == 200, r.text
    return assert_list(r.json(), "MessageObject" if "/messages" in path else "AssistantObject")


def test_empty_list(http, client):
    t = client.beta.threads.create()
    page = get_list(http, f"/threads/{t.id}/messages")
    assert page == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}
    for params in ({"order": "asc"}, {"limit": 1}, {"run_id": "run_x"}):
        assert get_list(http, f"/threads/{t.id}/messages", **params)["data"] == []


def test_insertion_order_breaks_created_at_ties(http, thread_of_25):
    thread_id, ids = thread_of_25
    texts = [m["content"][0]["text"]["value"]
             for m in get_list(http, f"/threads/{thread_id}/messages", order="asc", limit=100)["data"]]
    assert texts == [f"m{i:02d}" for i in range(N)]
    assert ids_of(get_list(http, f"/threads/{thread_id}/messages", limit=100)) == ids[::-1]


def test_default_limit_is_20_and_order_desc(http, thread_of_25):
    thread_id, ids = thread_of_25
    page = get_list(http, f"/threads/{thread_id}/messages")
    assert ids_of(page) == ids[::-1][:20] and page["has_more"] is True


@pytest.mark.parametrize("limit", [1, 24, 25, 26, 100])
def test_limits_and_has_more(http, thread_of_25, limit):
    thread_id, ids = thread_of_25
    for order, expected in (("asc", ids), ("desc", ids[::-1])):
        page = get_list(http, f"/threads/{thread_id}/messages", order=order, limit=limit)
        assert ids_of(page) == expected[:limit]
        # An exact page (n == limit) has no more.
        assert page["has_more"] is (limit < N)


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("limit", [1, 4, 5, 7])
def test_walking_pages_with_after_yields_the_full_list(http, thread_of_25, order, limit):
    thread_id, ids = thread_of_25
    expected = ids if order == "asc" else ids[::-1]
    walked, after, pages = [], None, 0
    while True:
        params = {"order": order, "limit": limit, **({"after": after} if after else {})}
        page = get_list(http, f"/threads/{thread_id}/messages", **params)
        walked += ids_of(page)
        pages += 1
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert walked == expected
    assert pages == -(-N // limit)


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_before_returns_the_page_just_before_the_cursor(http, thread_of_25, order):
    thread_id, ids = thread_of_25
    listed = ids if order == "asc" else ids[::-1]
    cursor = listed[10]
    page = get_list(http, f"/threads/{thread_id}/messages", order=order, limit=3, before=cursor)
    assert ids_of(page) == listed[7:10]
    assert page["has_more"] is True
    # Walking backwards with `before` reaches the start.
    page = get_list(http, f"/threads/{thread_id}/messages", order=order, limit=10, before=cursor)
    assert ids_of(page) == listed[0:10] and page["has_more"] is False
    page = get_list(http, f"/threads/{thread_id}/messages", order=order, limit=20, before=cursor)
    assert ids_of(page) == listed[0:10] and page["has_more"] is False
    assert get_list(http, f"/threads/{thread_id}/messages", order=order, before=listed[0])["data"] == []


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_after_and_before_together(http, thread_of_25, order):
    thread_id, ids = thread_of_25
    listed = ids if order == "asc" else ids[::-1]
    page = get_list(http, f"/threads/{thread_id}/messages", order=order, after=listed[3], before=listed[9])
    assert ids_of(page) == listed[4:9] and page["has_more"] is False
    page = get_list(http, f"/threads/{thread_id}/messages", order=order, after=listed[3], before=listed[9],
                    limit=2)
    assert ids_of(page) == listed[4:6] and page["has_more"] is True
    adjacent = get_list(http, f"/threads/{thread_id}/messages", order=order, after=listed[3],
                        before=listed[4])
    assert adjacent["data"] == [] and adjacent["has_more"] is False


def test_after_the_last_item_is_empty(http, thread_of_25):
    thread_id, ids = thread_of_25
    page = get_list(http, f"/threads/{thread_id}/messages", order="asc", after=ids[-1])
    assert page["data"] == [] and page["has_more"] is False


def test_sdk_auto_pagination(client, thread_of_25):
    thread_id, ids = thread_of_25
    assert [m.id for m in client.beta.threads.messages.list(thread_id, limit=2)] == ids[::-1]
    assert [m.id for m in client.beta.threads.messages.list(thread_id, limit=3, order="asc")] == ids
    pages = list(client.beta.threads.messages.list(thread_id, limit=10, order="asc").iter_pages())
    assert [len(p.data) for p in pages] == [10, 10, 5]


def test_sdk_before_page(client, thread_of_25):
    thread_id, ids = thread_of_25
    page = client.beta.threads.messages.list(thread_id, limit=4, order="asc", before=ids[13])
    assert [m.id for m in page.data] == ids[9:13] and page.has_more is True


def test_messages_created_one_by_one_keep_their_order(client):
    t = client.beta.threads.create()
    made = [client.beta.threads.messages.create(t.id, role="user", content=str(i)).id for i in range(12)]
    assert [m.id for m in client.beta.threads.messages.list(t.id, order="asc", limit=5)] == made
    assert [m.id for m in client.beta.threads.messages.list(t.id, limit=5)] == made[::-1]


def test_assistants_list_pagination(client, http):
    made = [client.beta.assistants.create(model="m", name=f"page-{i}").id for i in range(7)]
    # Newest first by default: the seven just made head the list.
    assert ids_of(get_list(http, "/assistants", limit=7)) == made[::-1]
    full = [a.id for a in client.beta.assistants.list(limit=100, order="asc")]
    assert full[-7:] == made
    walked = [a.id for a in client.beta.assistants.list(limit=3, order="asc")]
    assert walked == full
    page = get_list(http, "/assistants", order="asc", after=made[1], before=made[5])
    assert ids_of(page) == made[2:5]
    page = get_list(http, "/assistants", order="desc", limit=2, before=made[2])
    assert ids_of(page) == [made[4], made[3]] and page["has_more"] is True


@pytest.mark.parametrize(
    ("params", "param"),
    [({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"limit": -1}, "limit"),
     ({"limit": "abc"}, "limit"), ({"limit": "1.5"}, "limit"), ({"order": "up"}, "order"),
     ({"order": "ASCENDING"}, "order"), ({"after": "msg_doesnotexist"}, "after"),
     ({"before": "msg_doesnotexist"}, "before")],
)
def test_invalid_list_params(http, client, params, param):
    t = client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    for path in (f"/threads/{t.id}/messages", "/assistants"):
        r = http.get(path, params=params)
        assert r.status_code == 400, (path, params, r.text)
        body = assert_schema(r.json(), "ErrorResponse")["error"]
        assert body["type"] == "invalid_request_error" and body["param"] == param
        assert param in body["message"]


def test_cursor_from_another_thread_is_refused(http, client):
    t1 = client.beta.threads.create(messages=[{"role": "user", "content": "a"}])
    t2 = client.beta.threads.create(messages=[{"role": "user", "content": "b"}])
    foreign = client.beta.threads.messages.list(t1.id).data[0].id
    r = http.get(f"/threads/{t2.id}/messages", params={"after": foreign})
    assert r.status_code == 400 and r.json()["error"]["param"] == "after"
