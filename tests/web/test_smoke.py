"""The app starts, answers health checks and shows the login page in both languages."""


def test_healthz_answers_when_store_answers(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_login_page_is_bokmal_by_default(client):
    response = client.get("/login")
    assert response.status_code == 200
    assert '<html lang="nb">' in response.text
    assert "Logg inn" in response.text


def test_login_page_in_english_on_request(client):
    response = client.get("/login?lang=en")
    assert '<html lang="en">' in response.text
    assert "Log in" in response.text
