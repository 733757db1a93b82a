from tests.test_sync_fuzz import *  # noqa
from tests.test_sync_fuzz import _envelope_limit, _change, DEVICE, Deep, encode
from collections import Counter

def test_probe(tablet):
    limit = _envelope_limit(tablet)
    print("limit", limit)
    out = Counter()
    for fieldname in ["change_id", "entity", "id", "base_rev", "recorded_at", "whole", "data-x", "unknown"]:
        for d in range(limit - 45, limit + 2):
            ch = tablet.note_create()
            if fieldname == "whole":
                ch = Deep(d, "list")
            elif fieldname == "data-x":
                ch["data"]["x"] = Deep(d)
            elif fieldname == "unknown":
                ch["zz"] = Deep(d)
            else:
                ch[fieldname] = Deep(d, "list")
            a = tablet.post({"device_id": DEVICE, "cursor": None, "changes": [ch]})
            out[(fieldname, a.status_code)] += 1
            if a.status_code >= 500:
                print(fieldname, d, a.status_code, a.get_data(as_text=True)[:200], "".join(tablet.errors.records)[-600:])
    print(sorted(out.items()))
