#!/usr/bin/env python3
"""The web console in a real browser: headless Chromium (Debian's chromium and chromium-driver)
driven over WebDriver with the standard library only, against the live suite.

It buys an instance and syncs a tenant whose names hold "<script>" (through kooisvctl market, as
the marketplace would), marks the instance's provisioning job failed (as a broken provisioner
would leave it), then in the browser: logs in with the operator token through the login page of a
deep link, opens every page (overview, instances, one instance, failed jobs and outbox, tenants,
billing, audit with tail and verify), checks the "<script>" values are shown as text and never
run, re-drives the failed job with its button (and checks the database and the audit trail), goes
back with the browser's back button, logs out, logs in as the auditor, checks it sees no re-drive
button and that the re-drive route answers it 403 when called directly, and renders the overview
on a narrow screen. Screenshots of each page go to --screenshots.

Exit 0 passed, 1 failed, 77 skipped (no chromium or chromedriver: CTest SKIP_RETURN_CODE)."""

import argparse
import base64
import json
import os
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

XSS = "<script>window.pwned=1</script>"
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)
    print("ok   " + what, flush=True)


def load_env(path):
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            k, v = line.split("=", 1)
            words = shlex.split(v)  # KEY='value' lines, as a shell would read them
            env[k] = words[0] if words else ""
    return env


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class WebDriver:
    """The few W3C WebDriver commands the test needs."""

    def __init__(self, port):
        self.base = "http://127.0.0.1:%d" % port
        self.sid = None

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read().decode() or "null").get("value")
        except urllib.error.HTTPError as e:
            raise Failure("webdriver %s %s: %s" % (method, path, e.read().decode()[:500]))

    def s(self, method, path, body=None):
        return self.call(method, "/session/%s%s" % (self.sid, path), body)

    def start(self, args):
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": shutil.which("chromium"), "args": args}}}}
        self.sid = self.call("POST", "/session", caps)["sessionId"]

    def quit(self):
        if self.sid:
            try:
                self.call("DELETE", "/session/" + self.sid)
            except Exception:
                pass

    def go(self, url):
        self.s("POST", "/url", {"url": url})

    def js(self, script, *args):
        return self.s("POST", "/execute/sync", {"script": script, "args": list(args)})

    def js_async(self, script, *args):
        return self.s("POST", "/execute/async", {"script": script, "args": list(args)})

    def find(self, css):
        found = self.s("POST", "/element", {"using": "css selector", "value": css})
        if not isinstance(found, dict) or ELEMENT not in found:
            raise Failure("no element %s: %s" % (css, found))
        return found[ELEMENT]

    def click(self, css):
        self.s("POST", "/element/%s/click" % self.find(css), {})

    def type(self, css, text):
        self.s("POST", "/element/%s/value" % self.find(css), {"text": text})

    def wait(self, script, what, timeout=20, *args):
        end = time.time() + timeout
        while time.time() < end:
            v = self.js(script, *args)
            if v:
                return v
            time.sleep(0.2)
        raise Failure("timed out waiting for " + what)

    def screenshot(self, path):
        png = base64.b64decode(self.s("GET", "/screenshot"))
        with open(path, "wb") as f:
            f.write(png)


class Suite:
    def __init__(self, build):
        self.build = build
        self.env = load_env(os.path.join(build, "suite", "suite.env"))
        self.admin = self.env["KOOISV_ADMIN_URL"].rstrip("/")
        self.tls = ssl.create_default_context(cafile=self.env["KOOISV_CA_FILE"])

    def ctl(self, *args):
        out = subprocess.run([os.path.join(self.build, "gateway", "kooisvctl"), "--env-file",
                              os.path.join(self.build, "suite", "suite.env")] + list(args),
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise Failure("kooisvctl %s: %s %s" % (" ".join(args[:2]), out.stdout[-400:],
                                                   out.stderr[-400:]))
        return out.stdout.strip()

    def sql(self, query, *params):
        cmd = ["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", self.env["KOOISV_PG_SUPER_DSN"]]
        for i, p in enumerate(params):
            cmd += ["-v", "p%d=%s" % (i + 1, p)]
        out = subprocess.run(cmd, input=query, capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise Failure("psql: " + out.stderr[-400:])
        return out.stdout.strip()

    def admin_get(self, path, token):
        req = urllib.request.Request(self.admin + path,
                                     headers={"Authorization": "Bearer " + token})
        with urllib.request.urlopen(req, context=self.tls, timeout=30) as r:
            return json.loads(r.read().decode())


def spki_pin(cert_file):
    """base64 SHA-256 of the server certificate's public key: Chromium trusts that key only."""
    pub = subprocess.run(["openssl", "x509", "-in", cert_file, "-pubkey", "-noout"],
                         capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub,
                         capture_output=True, check=True).stdout
    import hashlib
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--screenshots", required=True)
    a = ap.parse_args()
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        print("SKIPPED: the browser test needs Debian's chromium and chromium-driver "
              "(apt-get install chromium chromium-driver)", flush=True)
        return 77
    os.makedirs(a.screenshots, exist_ok=True)
    for old in os.listdir(a.screenshots):  # no picture of an earlier run passes for this one
        if old.endswith(".png"):
            os.remove(os.path.join(a.screenshots, old))
    suite = Suite(a.build)
    env = suite.env
    shots = []

    # ---- data, as the marketplace and a broken provisioner would leave it
    stamp = str(int(time.time() * 1000))
    order = "CSCONSOLE" + stamp  # the emulator answers Query Order for any "CS..." id
    iid = suite.ctl("market", "newInstance", "--orderId", order, "--print", "instanceId")
    check(len(iid) > 0, "an instance bought through the production URL: " + iid)
    job = ""
    for _ in range(100):
        job = suite.sql("SELECT id FROM orders.jobs WHERE instance_id = :'p1' AND state = 'done'",
                        iid)
        if job:
            break
        time.sleep(0.2)
    check(job != "", "its provisioning job done: " + job)
    suite.sql("UPDATE orders.jobs SET state = 'failed', attempts = 5, last_error = :'p2',"
              " last_error_at = now() WHERE id = :'p1'", job, "provider said " + XSS)
    tenant = "t-console-" + stamp
    suite.ctl("market", "tenantSync", "--instanceId", iid, "--tenantId", tenant, "--flag", "1",
              "--orderId", order, "--tenantCode", "acme", "--name", "Acme " + XSS,
              "--domainName", "acme.example.com")
    suite.ctl("market", "singleOrgSync", "--instanceId", iid, "--tenantId", tenant, "--flag", "1",
              "--orgCode", "root", "--orgName", "Head office")
    suite.ctl("market", "singleOrgSync", "--instanceId", iid, "--tenantId", tenant, "--flag", "1",
              "--orgCode", "sales", "--orgName", "Sales " + XSS, "--parentCode", "root")

    # ---- the browser
    port = free_port()
    profile = tempfile.mkdtemp(prefix="kooisv-chromium-")
    log = open(os.path.join(a.screenshots, "chromedriver.log"), "w")
    drv = subprocess.Popen([driver, "--port=%d" % port], stdout=log, stderr=log)
    wd = WebDriver(port)
    try:
        for _ in range(100):
            try:
                wd.call("GET", "/status")
                break
            except Exception:
                time.sleep(0.1)
        pin = spki_pin(os.path.join(a.build, "suite", "tls", "server.crt"))
        wd.start(["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--window-size=1280,1000", "--user-data-dir=" + profile,
                  "--ignore-certificate-errors-spki-list=" + pin])
        base = suite.admin + "/console/"

        def shot(name):
            path = os.path.join(a.screenshots, name + ".png")
            wd.screenshot(path)
            shots.append(path)

        def loaded(what):
            wd.wait("var m = document.getElementById('main');"
                    " return m && m.textContent.indexOf('Loading') < 0 &&"
                    " m.textContent.indexOf('Verifying') < 0;", what)

        def page(hash_, what, name):
            wd.go(base + hash_)
            loaded(what)
            shot(name)

        def no_script_ran(where):
            check(wd.js("return window.pwned === undefined &&"
                        " document.querySelectorAll('script').length === 1;"),
                  "no injected script ran or entered the DOM (" + where + ")")

        # a deep link: the login page first, then the page asked for
        wd.go(base + "#/jobs")
        wd.wait("return !!document.getElementById('token');", "the login page")
        shot("login")
        wd.type("#token", env["KOOISV_OPERATOR_ROLE_TOKEN"])
        wd.click("#login-button")
        wd.wait("return location.hash === '#/jobs' && !!document.querySelector('#failed-jobs table');",
                "the failed jobs page after login")
        check(wd.js("return document.cookie === '';"),
              "the session cookie is HttpOnly: the page cannot read it")
        check(wd.js("return document.getElementById('who').textContent;") == "operator (operator)",
              "logged in as the operator")
        loaded("failed jobs")
        shot("jobs")

        # a value holding <script> is text
        cell = wd.js("var tds = document.querySelectorAll('#failed-jobs td');"
                     " for (var i = 0; i < tds.length; i++)"
                     "  if (tds[i].textContent.indexOf(arguments[0]) >= 0) return tds[i].textContent;"
                     " return null;", XSS)
        check(cell == "provider said " + XSS, "the job's last error is shown as text: " + str(cell))
        no_script_ran("failed jobs")

        # re-drive the job with its button
        check(wd.js("return !!document.querySelector('button.redrive[data-job=\"' + arguments[0] + '\"]');", job),
              "the operator sees a re-drive button for job " + job)
        wd.click('button.redrive[data-job="%s"]' % job)
        wd.wait("var b = document.querySelector('button.redrive[data-job=\"' + arguments[0] + '\"]');"
                " return b && b.getAttribute('data-result');", "the re-drive's answer", 20, job)
        result = wd.js("return document.querySelector('button.redrive[data-job=\"' + arguments[0] + '\"]')"
                       ".getAttribute('data-result');", job)
        check(result == "ok", "the re-drive succeeded in the page")
        state = suite.sql("SELECT state FROM orders.jobs WHERE id = :'p1'", job)
        check(state in ("pending", "running", "done"), "the job left 'failed' in the database: " + state)
        trail = suite.admin_get("/v1/audit?" + urllib.parse.urlencode(
            {"event": "admin.jobs.redrive", "resource": job, "caller": "operator"}),
            env["KOOISV_AUDITOR_TOKEN"])
        done = [e for e in trail["entries"] if e.get("outcome") and e["outcome"]["result_code"] == "000000"]
        check(len(done) == 1, "the re-drive is in the audit trail, by the operator, succeeded")

        # every page
        page("#/overview", "overview", "overview")
        check(wd.js("return !!document.querySelector('#calls-chart svg polyline');"),
              "the overview draws the calls-per-minute chart")
        cards = wd.js("return document.getElementById('overview-cards').textContent;")
        for label in ("Calls (24 h)", "Latency p99", "Provisioning backlog", "Dead letters",
                      "Usage push backlog", "Audit chain"):
            check(label in cards, "overview shows " + label)
        check("verified" in cards or "ok so far" in cards, "overview shows the chain verified")
        page("#/instances?order=" + order, "instances", "instances")
        check(wd.js("return document.querySelector('#main table').textContent.indexOf(arguments[0]) >= 0;", iid),
              "the instance is found by its order id")
        wd.click('a[href="#/instance/%s"]' % iid)
        wd.wait("return location.hash === '#/instance/' + arguments[0];", "the instance page", 10, iid)
        loaded("instance")
        shot("instance")
        text = wd.js("return document.getElementById('main').textContent;")
        for part in ("History", "Orders", "Jobs", "Licenses", "Usage", order):
            check(part in text, "the instance page shows " + part)
        # the back button returns to the search, deep link and all
        wd.s("POST", "/back", {})
        wd.wait("return location.hash === '#/instances?order=' + arguments[0] &&"
                " !!document.querySelector('#main table');", "the search after Back", 15, order)
        check(True, "the back button returns to the instance search")

        page("#/tenants?" + urllib.parse.urlencode({"tenant": tenant, "instance": iid}), "tenants", "tenants")
        tree = wd.js("return document.getElementById('tenant-tree').textContent;")
        check("Head office" in tree and "Sales " + XSS in tree, "the org tree, its <script> name as text")
        no_script_ran("tenants")
        page("#/billing", "billing", "billing")
        billing = wd.js("return document.getElementById('billing').textContent;")
        check("billing service not configured" in billing or "usage push" in billing.lower(),
              "the billing page: " + billing[:80])
        page("#/audit?" + urllib.parse.urlencode({"resource": iid}), "audit", "audit")
        rows = wd.js("return document.querySelectorAll('#audit-results tbody tr').length;")
        check(rows >= 3, "the audit page lists the instance's entries (%d)" % rows)
        wd.click("#audit-verify")
        wd.wait("return !!document.getElementById('verify-result');", "the chain verified", 60)
        check("Chain verified" in wd.js("return document.getElementById('verify-result').textContent;"),
              "verify from the page: the chain is intact")
        wd.click("#audit-tail")
        wd.wait("return document.getElementById('audit-tail').textContent === 'Stop tail';", "tail started")
        suite.ctl("market", "queryInstance", "--instanceId", iid)
        wd.wait("return document.getElementById('audit-results').textContent.indexOf('queryInstance') >= 0;",
                "the live tail showing a new call", 30)
        check(True, "the live tail shows a call made after it started")
        shot("audit-tail")
        wd.click("#audit-tail")
        check("/v1/audit/export" in wd.js("return document.getElementById('audit-export-csv').href;"),
              "the export link uses the admin route")

        # narrow screen
        wd.s("POST", "/window/rect", {"width": 390, "height": 844})
        page("#/overview", "overview (narrow)", "overview-narrow")
        check(wd.js("return document.documentElement.scrollWidth <= window.innerWidth + 1;"),
              "no horizontal scrolling on a narrow screen")
        wd.s("POST", "/window/rect", {"width": 1280, "height": 1000})

        # logout, then the auditor
        wd.click("#logout")
        wd.wait("return !!document.getElementById('token');", "the login page after logout")
        check(wd.js("return document.getElementById('main').textContent.indexOf('Logged out') >= 0;"),
              "logged out")
        wd.go(base + "#/jobs")
        wd.wait("return !!document.getElementById('token');", "the login page again")
        wd.type("#token", env["KOOISV_AUDITOR_TOKEN"])
        wd.click("#login-button")
        wd.wait("return !!document.querySelector('#failed-jobs .error');", "the auditor's refusal")
        loaded("auditor jobs")
        shot("auditor-jobs")
        check("403" in wd.js("return document.querySelector('#failed-jobs .error').textContent;"),
              "the auditor is refused the failed jobs (403)")
        check(wd.js("return document.querySelectorAll('button.redrive').length;") == 0,
              "the auditor sees no re-drive button")
        status = wd.js_async(
            "var job = arguments[0], done = arguments[arguments.length - 1];"
            " fetch('/v1/session', {credentials: 'same-origin'}).then(function (r) { return r.json(); })"
            " .then(function (s) { return fetch('/v1/jobs/' + job + '/redrive', {method: 'POST',"
            "   credentials: 'same-origin', headers: {'X-CSRF-Token': s.csrf}}); })"
            " .then(function (r) { done(r.status); }).catch(function (e) { done(String(e)); });", job)
        check(status == 403, "the auditor's direct re-drive call is refused by the server (%s)" % status)
        page("#/overview", "auditor overview", "auditor-overview")
    except Failure as e:
        print("FAIL " + str(e), flush=True)
        try:
            wd.screenshot(os.path.join(a.screenshots, "failure.png"))
            print("page: " + str(wd.js("return document.body.innerText;"))[:1500])
        except Exception:
            pass
        return 1
    finally:
        wd.quit()
        drv.terminate()
        try:
            drv.wait(10)
        except subprocess.TimeoutExpired:
            drv.kill()
        log.close()
        shutil.rmtree(profile, ignore_errors=True)
    print("screenshots: " + ", ".join(shots))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (Failure, OSError, KeyError) as e:
        print("FAIL " + str(e), flush=True)
        sys.exit(1)
