#!/usr/bin/env python3
"""Drives the ops console in a real headless Chromium (Debian chromium + chromium-driver, through
selenium): loads the page, gives it the admin token if it asks, waits until the sink's charts
have points with traffic in them, changes one setting in the sink's form and waits for the page
to say it was applied. Prints a JSON summary; exits non-zero on any failure.

    console_check.py ADMIN_URL SINK SETTING VALUE [--token TOKEN] [--screenshot PNG]
"""
import argparse
import json
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


def wait_for(description, condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise SystemExit(f"console_check: timed out waiting for {description}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("admin_url")
    parser.add_argument("sink")
    parser.add_argument("setting")
    parser.add_argument("value")
    parser.add_argument("--token")
    parser.add_argument("--screenshot")
    args = parser.parse_args()

    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(args.admin_url + "/")
        if args.token:
            prompt = wait_for("the token prompt", lambda: driver.find_element(By.ID, "auth").is_displayed() and driver.find_element(By.ID, "token"))
            prompt.send_keys(args.token)
            driver.find_element(By.ID, "save-token").click()
        chart = f'[data-chart="sink:{args.sink}:events"]'
        points = wait_for(
            "the sink's events chart to get points",
            lambda: int(driver.execute_script(f"const c = document.querySelector('{chart}'); return c ? c.dataset.points : 0") or 0),
        )
        busy = wait_for(
            "a sample with events flowing",
            lambda: driver.execute_script(
                f"return (series['sink:{args.sink}'] || []).filter(s => s.events_per_second > 0).length"),
        )
        other_charts = driver.execute_script(
            "return Array.from(document.querySelectorAll('[data-chart]')).filter(c => Number(c.dataset.points) > 0).map(c => c.dataset.chart)")

        form = f'form[data-sink="{args.sink}"]'
        field = wait_for("the sink's form", lambda: driver.find_elements(By.CSS_SELECTOR, f'{form} input[name="{args.setting}"]'))[0]
        before = field.get_attribute("value")
        field.clear()
        field.send_keys(args.value)
        driver.find_element(By.CSS_SELECTOR, f"{form} button[type=submit]").click()
        status = wait_for(
            "the form to report the change",
            lambda: driver.find_element(By.CSS_SELECTOR, f"{form} .status").text
            if "done" in driver.find_element(By.CSS_SELECTOR, f"{form} .status").get_attribute("class")
            or "error" in driver.find_element(By.CSS_SELECTOR, f"{form} .status").get_attribute("class")
            else None,
        )
        ok = "done" in driver.find_element(By.CSS_SELECTOR, f"{form} .status").get_attribute("class")
        if args.screenshot:
            time.sleep(1.5)
            driver.save_screenshot(args.screenshot)
        print(json.dumps({"points": points, "busy_samples": busy, "charts_with_points": other_charts, "before": before,
                          "status": status, "applied": ok}))
        return 0 if ok else 1
    finally:
        driver.quit()


if __name__ == "__main__":
    sys.exit(main())
