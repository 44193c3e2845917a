"""Floor plans (平面图) in the console, in Debian's Chromium against the real service (issue 22).

The safety office uploads a floor's plan through the page and drags a device onto it; the position
is kept across a reload (it is in the registry). A fire on that floor then opens on the plan from
its incident card: the fire's devices blink (a CSS animation that runs), and hold a steady ring
instead where the person asked for less motion. Fixtures and helpers are the console tests' own.
"""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import Browser, FilePayload, Page, expect

import tests.test_console as console_tests
from firewatch.demo_plans import demo_registry_placed, install_demo_plans
from tests.test_console import (
    CHIEF,
    MAINTENANCE,
    OPERATOR,
    VIEWER,
    Stack,
    new_page,
    open_alarms,
    open_console,
    shot,
    until,
)

# The console tests' fixtures: the running stack, the browser, a page (uncaught page errors fail).
stack = console_tests.stack
browser = console_tests.browser
page = console_tests.page
pytestmark = console_tests.pytestmark

PLAN_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1000 600">'
    '<rect x="5" y="5" width="990" height="590" fill="#fafafa" stroke="#333" stroke-width="6"/>'
    '<rect x="5" y="5" width="495" height="590" fill="none" stroke="#333" stroke-width="3"/>'
    '<text x="40" y="60" font-size="36">东区</text><text x="540" y="60" font-size="36">西区</text>'
    "</svg>"
)


async def incident_of_device(stack: Stack, floor: str) -> dict[str, Any] | None:
    r = await stack.api.get("/api/v1/incidents", params={"open": True, "limit": 100})
    r.raise_for_status()
    for incident in r.json()["items"]:
        if floor in incident["floors"] and incident["category"] == "fire":
            return dict(incident)
    return None


async def test_a_plan_is_uploaded_a_device_dragged_onto_it_and_a_fire_blinks_there(
    stack: Stack, page: Page, browser: Browser
) -> None:
    floor = "/".join(stack.plan.fire_zone.split("/")[:3])
    devices = (await stack.api.get(f"/api/v1/places/{floor}/plan/devices")).json()
    in_zone = [d["id"] for d in devices if d["place"].startswith(stack.plan.fire_zone)]
    dragged = in_zone[0]

    # (1) No plan yet: a viewer is told so and offered nothing; the safety office gets the upload.
    viewer = await new_page(browser)
    await open_console(viewer, stack, VIEWER)
    await viewer.goto(f"{stack.base_url}/console#/plan/{floor}")
    await expect(viewer.locator('[data-role="plan-none"]')).to_contain_text("本楼层还没有平面图")
    await expect(viewer.locator('[data-role="plan-upload"]')).to_have_count(0)
    await viewer.context.close()

    await open_console(page, stack, CHIEF)
    await page.goto(f"{stack.base_url}/console#/plan/{floor}")
    await expect(page.locator("#tab-plan")).to_have_text("平面图")
    await expect(page.locator('[data-role="plan-none"]')).to_be_visible()
    await page.locator('[data-role="plan-file"]').set_input_files(
        FilePayload(name="plan.svg", mimeType="image/svg+xml", buffer=PLAN_SVG.encode("utf-8"))
    )
    await expect(page.locator('[data-role="plan-chosen"]')).to_have_text("plan.svg")
    await expect(page.locator('[data-role="plan-choose"]')).to_have_text("选择文件")
    await page.click('[data-role="plan-send"]')
    figure = page.locator('[data-role="plan-figure"]')
    await expect(figure.locator("img.plan-img")).to_be_visible()
    assert (await figure.locator("img.plan-img").get_attribute("src") or "").startswith("blob:")
    await expect(page.locator('[data-role="plan-meta"]')).to_contain_text("保卫科周九")

    # Every other device of the floor placed over the API, the first of the fire zone left to drag.
    for n, d in enumerate(devices):
        if d["id"] != dragged:
            x, y = 0.05 + 0.9 * ((n * 37) % 100) / 100, 0.1 + 0.8 * ((n * 53) % 100) / 100
            r = await stack.api.put(f"/api/v1/devices/{d['id']}/plan", json={"x": x, "y": y})
            assert r.status_code == 200, r.text
    await page.reload()
    item = page.locator(f'[data-role="plan-unplaced"][data-device-id="{dragged}"]')
    await expect(item).to_be_visible()

    # (2) Drag it onto the plan, a quarter across and half down: saved, and kept across a reload.
    source = await item.bounding_box()
    box = await figure.bounding_box()
    assert source
    assert box
    await page.mouse.move(source["x"] + source["width"] / 2, source["y"] + source["height"] / 2)
    await page.mouse.down()
    target = (box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.5)
    await page.mouse.move(*target, steps=8)
    await page.mouse.up()
    await expect(page.locator('[data-role="plan-saved"]')).to_be_visible()
    marker = page.locator(f'[data-role="plan-marker"][data-device-id="{dragged}"]')
    await expect(marker).to_have_count(1)
    await page.reload()
    await expect(marker).to_have_count(1)
    await expect(page.locator(f'[data-role="plan-unplaced"][data-device-id="{dragged}"]')).to_have_count(0)
    kept = (await stack.api.get(f"/api/v1/places/{floor}/plan/devices")).json()
    placed = next(d for d in kept if d["id"] == dragged)
    assert abs(placed["x"] - 0.25) < 0.02
    assert abs(placed["y"] - 0.5) < 0.02
    await shot(page, "20-plan-placed", docs="plan-placing")

    # (3) A fire in that zone: from its incident card the plan opens with the fire's devices blinking.
    operator = await new_page(browser)
    await open_console(operator, stack, OPERATOR)
    stack.sim.fleet.flaming_fire(stack.plan.fire_zone, stack.sim.t)
    fires = await until(lambda: open_alarms(stack, category="fire", place=floor), "a fire alarm on the floor")
    incident = await until(lambda: incident_of_device(stack, floor), "the fire's incident")
    card = operator.locator(f'#board-list > li[data-incident-id="{incident["id"]}"]')
    await card.locator('[data-role="plan"]').click()
    await expect(operator.locator('[data-role="plan-incident"]')).to_contain_text(f"事件 #{incident['id']}")
    burning = operator.locator(f'[data-role="plan-marker"][data-device-id="{fires[0]["device_id"]}"]')
    await expect(burning).to_have_class("plan-marker cat-fire blink")
    await expect(burning).to_have_css("animation-name", "plan-blink")
    await expect(burning).to_have_css("background-color", "rgb(224, 22, 27)")  # --fire
    await shot(operator, "21-plan-incident", docs="plan-incident")
    quiet = operator.locator('[data-role="plan-marker"][data-category="normal"]').first
    await expect(quiet).not_to_have_class(re.compile(r"\bblink\b"))

    # Less motion asked for: the same marker holds a steady ring, no animation.
    await operator.emulate_media(reduced_motion="reduce")
    await expect(burning).to_have_css("animation-name", "none")
    await operator.context.close()


async def test_maintenance_may_place_devices_but_not_upload_plans(stack: Stack, page: Page) -> None:
    floor = "/".join(stack.plan.fire_zone.split("/")[:3])
    files = {"file": ("plan.svg", PLAN_SVG.encode("utf-8"), "image/svg+xml")}
    assert (await stack.api.put(f"/api/v1/places/{floor}/plan", files=files)).status_code == 200
    await open_console(page, stack, MAINTENANCE)
    await page.goto(f"{stack.base_url}/console#/plan/{floor}")
    await expect(page.locator('[data-role="plan-figure"] img')).to_be_visible()
    await expect(page.locator('[data-role="plan-side"]')).to_be_visible()
    await expect(page.locator('[data-role="plan-upload"]')).to_have_count(0)


async def test_the_demo_hospitals_fire_blinks_on_its_drawn_floor_plan(stack: Stack, page: Page) -> None:
    floor = "/".join(stack.plan.fire_zone.split("/")[:3])
    install_demo_plans(stack.service.sessions)
    stack.service.apply_registry(demo_registry_placed(stack.service.registry))
    await open_console(page, stack, OPERATOR)
    stack.sim.fleet.flaming_fire(stack.plan.fire_zone, stack.sim.t)
    fires = await until(lambda: open_alarms(stack, category="fire", place=floor), "a fire alarm on the floor")
    incident = await until(lambda: incident_of_device(stack, floor), "the fire's incident")
    await page.locator(f'#board-list > li[data-incident-id="{incident["id"]}"] [data-role="plan"]').click()
    await expect(page.locator('[data-role="plan-meta"]')).to_contain_text("演示平面图")
    burning = page.locator(f'[data-role="plan-marker"][data-device-id="{fires[0]["device_id"]}"]')
    await expect(burning).to_have_css("animation-name", "plan-blink")
    await expect(page.locator('[data-role="plan-marker"]')).to_have_count(
        len((await stack.api.get(f"/api/v1/places/{floor}/plan/devices")).json())
    )
    await shot(page, "22-plan-demo", docs="plan-demo")
