"""The lab in a real browser (headless Chromium from Debian, driven by Selenium through Debian's
/usr/bin/chromedriver, so Selenium Manager never downloads anything).

Called by tests/lab/run with: the lab's URL (loopback, no token), the name of the finished run, the name
of the run still training, a phantom DICOM, the URL of a second lab bound to 0.0.0.0 with a token, the
token file, and the screenshot directory. Exits non-zero (an AssertionError) on the first failed check.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

LAB, DONE, LIVE, DICOM, SECURE, TOKEN_FILE, SHOTS = sys.argv[1:8]
os.makedirs(SHOTS, exist_ok=True)


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
              "--disable-gpu", "--no-first-run", "--disable-background-networking"]:
        opts.add_argument(a)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def wait(d, what, cond, timeout=60):
    try:
        return WebDriverWait(d, timeout, poll_frequency=0.2).until(lambda d: cond(d))
    except Exception as e:
        shot(d, "failed-" + what.replace(" ", "-"))
        raise AssertionError(f"timed out waiting for {what}; page error: {page_error(d)}") from e


def page_error(d):
    errs = d.find_elements(By.CSS_SELECTOR, ".error")
    return errs[0].text if errs else "(none)"


def shot(d, name):
    path = os.path.join(SHOTS, name + ".png")
    d.save_screenshot(path)
    print(f"   screenshot {path}")


def status_of(d, run):
    rows = d.find_elements(By.CSS_SELECTOR, f'#runs-table tbody tr[data-run="{run}"]')
    return rows[0].find_element(By.CSS_SELECTOR, "td.status").text if rows else None


def http(url, headers=None, data=None):
    req = urllib.request.Request(url, headers=headers or {}, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


d = browser()
try:
    print("== runs list: both runs with their status")
    d.get(LAB + "/")
    wait(d, "the runs table", lambda d: status_of(d, DONE) and status_of(d, LIVE))
    assert status_of(d, DONE) == "finished", status_of(d, DONE)
    assert status_of(d, LIVE) == "running", status_of(d, LIVE)
    shot(d, "runs")

    print("== filter keeps only the matching run")
    d.find_element(By.ID, "runs-filter").send_keys(LIVE)
    wait(d, "the filter", lambda d: status_of(d, DONE) is None and status_of(d, LIVE) == "running")
    d.find_element(By.ID, "runs-filter").clear()

    print("== live curve gains points while the run trains")
    d.get(LAB + "/#/run/" + LIVE)
    count = lambda d: int(d.find_element(By.ID, "curve-count").get_attribute("data-count") or 0)
    wait(d, "the first curve points", lambda d: count(d) > 0)
    first = count(d)
    wait(d, "more curve points without reloading", lambda d: count(d) > first + 2, timeout=90)
    print(f"   {first} -> {count(d)} points")
    assert d.find_elements(By.CSS_SELECTOR, "#curves svg polyline"), "curves are drawn"
    shot(d, "run-live")

    print("== the finished run: evaluation, ROC/FROC, gallery, report")
    d.get(LAB + "/#/run/" + DONE)
    wait(d, "the evaluation table", lambda d: d.find_elements(By.CSS_SELECTOR, "#eval-table tr"))
    assert d.find_elements(By.CSS_SELECTOR, ".figs img"), "ROC/FROC figures from report.html"
    assert d.find_elements(By.CSS_SELECTOR, ".gallery img"), "sample gallery"
    report = d.find_element(By.ID, "report-link").get_attribute("href")
    shot(d, "run-finished")
    d.get(report)
    wait(d, "the report", lambda d: "ROC" in d.page_source)
    shot(d, "report")

    print("== compare: a config difference, curves overlaid")
    d.get(f"{LAB}/#/compare/{DONE},{LIVE}")
    wait(d, "the causes table", lambda d: d.find_elements(By.CSS_SELECTOR, '#diff-causes tr[data-key="train.steps"]'))
    assert d.find_elements(By.CSS_SELECTOR, "#compare-curves .legend"), "overlaid curves with a legend"
    shot(d, "compare")

    print("== explain: upload a phantom DICOM, see the overlay and the score")
    d.get(LAB + "/#/explain")
    wait(d, "the file input", lambda d: d.find_elements(By.ID, "explain-file"))
    sel = d.find_element(By.ID, "explain-run")
    for o in sel.find_elements(By.TAG_NAME, "option"):
        if o.get_attribute("value") == DONE:
            o.click()
    d.find_element(By.ID, "explain-file").send_keys(DICOM)
    wait(d, "the score", lambda d: d.find_elements(By.ID, "explain-score"), timeout=120)
    score = float(d.find_element(By.ID, "explain-score").text)
    assert 0.0 <= score <= 1.0, score
    img = d.find_element(By.ID, "explain-image")
    assert img.get_attribute("src").startswith("data:image/png;base64,"), "overlay shown"
    assert img.get_attribute("data-layer") == "map"
    wait(d, "the overlay to load", lambda d: d.execute_script("return arguments[0].naturalWidth", img) > 0)
    shot(d, "explain")
    d.find_element(By.ID, "layer-raw").click()
    assert img.get_attribute("data-layer") == "raw"
    d.find_element(By.ID, "zoom-in").click()
    assert "scale" in (img.get_attribute("style") or ""), "zoom changes the transform"
    d.find_element(By.ID, "layer-saliency").click()
    shot(d, "explain-saliency")
    print(f"   score {score}")
finally:
    d.quit()

print("== non-loopback bind: every page and API is 401 without the token, 200 with it")
token = open(TOKEN_FILE).read().strip()
paths = ["/", "/assets/app.js", "/assets/app.css", "/api/runs", f"/api/run?run={DONE}", f"/api/curves?run={DONE}",
         f"/api/compare?run={DONE}&run={LIVE}", f"/files/{DONE}/eval/report.html", "/no/such/page"]
for p in paths:
    code, body = http(SECURE + p)
    assert code == 401, f"{p} without the token: {code}"
    assert token.encode() not in body, f"{p}: the token is in the answer"
    code, _ = http(SECURE + p, headers={"Authorization": "Bearer wrong-" + token})
    assert code == 401, f"{p} with a wrong token: {code}"
    code, _ = http(SECURE + p, headers={"Authorization": "Bearer " + token})
    want = 404 if p == "/no/such/page" else 200
    assert code == want, f"{p} with the token: {code}"
code, _ = http(SECURE + f"/api/explain?run={DONE}", data=open(DICOM, "rb").read())
assert code == 401, f"explain without the token: {code}"
code, body = http(SECURE + f"/api/explain?run={DONE}", headers={"Authorization": "Bearer " + token},
                  data=open(DICOM, "rb").read())
assert code == 200 and 0 <= json.loads(body)["result"]["score"] <= 1, code

print("== the login page sets the cookie; then the lab works in the browser")
d = browser()
try:
    d.get(SECURE + "/")
    wait(d, "the login form", lambda d: d.find_elements(By.ID, "token"))
    shot(d, "login")
    old = d.find_element(By.ID, "token")
    old.send_keys("wrong")
    d.find_element(By.ID, "login").click()
    wait(d, "the answer to a wrong token", EC.staleness_of(old))
    wait(d, "the login form again", lambda d: d.find_elements(By.ID, "token"))
    assert not d.get_cookies(), "no cookie for a wrong token"
    d.find_element(By.ID, "token").send_keys(token)
    d.find_element(By.ID, "login").click()
    wait(d, "the runs table after login", lambda d: status_of(d, DONE) == "finished")
    c = [c for c in d.get_cookies() if c["name"] == "mammogan_lab"]
    assert c and c[0]["httpOnly"] and c[0].get("sameSite") == "Strict", c
    assert d.execute_script("return document.cookie") == "", "the cookie is invisible to scripts"
finally:
    d.quit()
print("lab browser test: OK")
