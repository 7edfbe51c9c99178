from appliance.modem.ussd import balance_from, parse_cusd


def test_plain_text_answer() -> None:
    a = parse_cusd('+CUSD: 0,"Your balance is Rs.12.50. Jazz: dial *117#",15')
    assert a is not None and a.status == 0 and a.dcs == 15
    assert balance_from(a.text, r"Rs\.?\s*([0-9.,]+)") == 12.50


def test_ucs2_hex_answer() -> None:
    text = "بیلنس Rs.1,234.00"
    a = parse_cusd(f'+CUSD: 0,"{text.encode("utf-16-be").hex().upper()}",72')
    assert a is not None and a.text == text
    assert balance_from(a.text, r"Rs\.?\s*([0-9.,]+)") == 1234.0


def test_garbage_and_no_match() -> None:
    assert parse_cusd("+CUSD: x") is None
    a = parse_cusd("+CUSD: 4")
    assert a is not None and a.status == 4 and a.text == ""
    assert balance_from("no amount here", r"Rs\.?\s*([0-9.,]+)") is None
    assert balance_from("Rs. abc", r"Rs\.?\s*([a-z]+)") is None
