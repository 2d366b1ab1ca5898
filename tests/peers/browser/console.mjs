// Drives a real browser (Debian's headless Chromium, through playwright-core) through the
// admin console, and writes a desktop (1280 wide) and a phone (390 wide) screenshot of
// every page it sees. Used by tests/it/console.rs.
//
//   node console.mjs oidc GATEWAY_URL SHOTS_DIR ISSUER
//     An admin (alice) signs in through the connection "Node IdP", creates a second OIDC
//     connection from the preset grid (Custom, "Fetch from issuer"), saves, turns it off
//     (by keyboard) and on; then carol signs in with its button, and is refused the console.
//     Before saving, it runs Test Provider with the unsaved form (a new window) and reads
//     the result.
//   node console.mjs saml GATEWAY_URL SHOTS_DIR IDP_METADATA_FILE   (CONSOLE_TOKEN in env)
//     The admin signs in with the admin token, creates a SAML connection from the grid with
//     the IdP's metadata uploaded and signed requests on, saves, toggles it; then a user
//     signs in with its button.
//
// When the test must act (register a redirect URI at the IdP, give the IdP our SP
// metadata), it prints {"need": ...} and waits for a line on stdin. At the end it prints
// one JSON line of what it saw; exit 1 on error.
import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';
import { mkdirSync } from 'node:fs';

const [mode, gateway, shots, arg] = process.argv.slice(2);
mkdirSync(shots, { recursive: true });
const reader = createInterface({ input: process.stdin });
const lines = reader[Symbol.asyncIterator]();
async function ask(need) {
  console.log(JSON.stringify(need));
  const { value, done } = await lines.next();
  if (done || value.trim() !== 'ok') throw new Error(`the test answered ${JSON.stringify(value)} to ${JSON.stringify(need)}`);
}

const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
async function shot(page, name) {
  await page.setViewportSize(PHONE);
  await page.screenshot({ path: `${shots}/${name}-phone.png`, fullPage: true });
  await page.setViewportSize(DESKTOP);
  await page.screenshot({ path: `${shots}/${name}-desktop.png`, fullPage: true });
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const out = {};
// Any page that breaks the CSP shows up here (the console must need no inline code).
const cspViolations = [];
function watch(page) {
  page.setDefaultTimeout(15000);
  page.on('console', (m) => { if (/Content.Security.Policy/i.test(m.text())) cspViolations.push(m.text()); });
  return page;
}
async function toggle(page, name, want) {
  await Promise.all([page.waitForURL(`**/console/connections?done=${want}*`),
    page.getByRole('switch', { name: `${name} active` }).click()]);
  return page.getByRole('switch', { name: `${name} active` }).getAttribute('aria-checked');
}

try {
  const ctx = await browser.newContext({ viewport: DESKTOP });
  const page = watch(await ctx.newPage());
  await page.goto(`${gateway}/console`);
  if (mode === 'oidc') {
    await shot(page, 'signin');
    await page.getByRole('link', { name: 'Sign in with Node IdP' }).click();
    await page.locator('input[name="login"]').fill('alice');
    await Promise.all([page.waitForURL(`${gateway}/console/connections`), page.locator('form').first().evaluate((f) => f.submit())]);
    out.who = await page.locator('.who-name').innerText();
    await shot(page, 'connections');

    await page.getByRole('link', { name: '+ New connection' }).click();
    await shot(page, 'new-protocol');
    await page.locator('a.choice', { hasText: 'OpenID Connect' }).click();
    out.presets = await page.locator('a.preset').evaluateAll((as) => as.map((a) => a.dataset.provider));
    await shot(page, 'new-oidc-providers');
    await page.locator('a.preset[data-provider="custom"]').click();
    out.callback = await page.locator('#callback-url').inputValue();
    await shot(page, 'new-oidc-form');
    // The callback URL is final before saving: the IdP learns it now.
    await ask({ need: 'redirect_uri', callback: out.callback });

    await page.getByLabel('Display name').fill('Second IdP');
    await page.locator('#oidc-issuer').fill(arg);
    await page.getByRole('button', { name: 'Fetch from issuer' }).click();
    await page.waitForLoadState('load');
    out.fetched = await page.locator('#oidc-authorization-endpoint').inputValue();
    out.fetch_notice = await page.locator('.notice.success').innerText();
    await page.locator('#oidc-client-id').fill('gateway');
    await page.locator('#oidc-client-secret').fill('gateway-secret-0123456789');
    await page.getByLabel('Create new users on first login').check();
    await shot(page, 'new-oidc-filled');

    // Test Provider with the unsaved form: a new window signs in at the IdP and shows the
    // result; the test compares the store before and after.
    await ask({ need: 'snapshot' });
    const [popup] = await Promise.all([ctx.waitForEvent('page'), page.getByRole('button', { name: 'Test provider' }).click()]);
    watch(popup);
    await popup.waitForURL(/\/(interaction\/|test\/[^/]+$)/);
    if (popup.url().includes('/interaction/')) {
      await popup.locator('input[name="login"]').fill('alice');
      await popup.locator('form').first().evaluate((f) => f.submit());
      await popup.waitForURL(/\/test\/[^/]+$/);
    }
    await popup.getByText('The round trip verified').waitFor();
    out.test_verdict = await popup.locator('.notice').first().innerText();
    out.test_checks = await popup.locator('ol.checks li').allInnerTexts();
    out.test_outcome = await popup.locator('section.card').nth(1).innerText();
    await shot(popup, 'test-provider-result');
    await popup.close();
    await ask({ need: 'compare' });

    await Promise.all([page.waitForURL('**/console/connections?done=created*'), page.getByRole('button', { name: 'Save connection' }).click()]);
    out.created = await page.locator('.notice.success').innerText();

    // Off by keyboard, then on by mouse.
    await page.getByRole('switch', { name: 'Second IdP active' }).focus();
    await Promise.all([page.waitForURL('**/console/connections?done=off*'), page.keyboard.press('Enter')]);
    out.off = await page.getByRole('switch', { name: 'Second IdP active' }).getAttribute('aria-checked');
    await shot(page, 'connections-off');
    out.on = await toggle(page, 'Second IdP', 'on');
    await shot(page, 'connections-two');

    const id = out.callback.split('/').at(-2);
    await page.getByRole('link', { name: 'Second IdP', exact: true }).click();
    out.edit_url = page.url();
    await shot(page, 'edit-oidc');
    await page.goto(`${gateway}/console/connections/${id}/delete`);
    out.delete_text = await page.locator('main').innerText();
    await shot(page, 'delete-confirm');

    // A user signs in with the new connection's button, and gets no console.
    const user = watch(await (await browser.newContext({ viewport: DESKTOP })).newPage());
    await user.goto(`${gateway}/login`);
    out.buttons = await user.locator('a.button').allInnerTexts();
    await user.getByRole('link', { name: /Sign in with Second IdP/ }).click();
    await user.locator('input[name="login"]').fill('carol');
    await Promise.all([user.waitForURL(`${gateway}/`), user.locator('form').first().evaluate((f) => f.submit())]);
    out.user_text = await user.locator('body').innerText();
    const refused = await user.goto(`${gateway}/console/enter`);
    out.refused_status = refused.status();
    out.refused_text = await user.locator('body').innerText();
    await shot(user, 'forbidden');
  } else if (mode === 'saml') {
    await shot(page, 'signin-first-run');
    await page.getByLabel('Admin token').fill(process.env.CONSOLE_TOKEN);
    await Promise.all([page.waitForURL(`${gateway}/console/connections`), page.getByRole('button', { name: 'Sign in with the admin token' }).click()]);
    out.who = await page.locator('.who-name').innerText();
    out.empty = await page.locator('.empty').innerText();
    await shot(page, 'connections-empty');

    await page.locator('.empty').getByRole('link', { name: '+ New connection' }).click();
    await page.locator('a.choice', { hasText: 'SAML 2.0' }).click();
    out.presets = await page.locator('a.preset').evaluateAll((as) => as.map((a) => a.dataset.provider));
    await shot(page, 'new-saml-providers');
    await page.locator('a.preset[data-provider="custom"]').click();
    out.acs = await page.locator('#acs-url').inputValue();
    out.sp_metadata = await page.locator('#sp-metadata-url').inputValue();
    out.entity_id = await page.locator('#sp-entity-id').inputValue();
    await shot(page, 'new-saml-form');

    await page.getByLabel('Display name').fill('Test SAML');
    await page.locator('#saml-idp-metadata-file').setInputFiles(arg);
    await page.getByLabel('Create new users on first login').check();
    await page.getByLabel('Sign client requests').check();
    await Promise.all([page.waitForURL('**/console/connections?done=created*'), page.getByRole('button', { name: 'Save connection' }).click()]);
    out.created = await page.locator('.notice.success').innerText();
    out.off = await toggle(page, 'Test SAML', 'off');
    out.on = await toggle(page, 'Test SAML', 'on');
    await shot(page, 'connections-saml');
    // The IdP reads our SP metadata (with the generated signing certificate) now.
    await ask({ need: 'sp_metadata', url: out.sp_metadata });

    // Test Provider from the row (the saved settings): a new window, nothing created.
    await ask({ need: 'snapshot' });
    const [popup] = await Promise.all([ctx.waitForEvent('page'), page.getByRole('button', { name: 'Test Test SAML' }).click()]);
    watch(popup);
    await popup.waitForURL(/\/test\/[^/]+$/);
    await popup.getByText('The round trip verified').waitFor();
    out.test_verdict = await popup.locator('.notice').first().innerText();
    out.test_checks = await popup.locator('ol.checks li').allInnerTexts();
    out.test_outcome = await popup.locator('section.card').nth(1).innerText();
    await shot(popup, 'test-provider-saml');
    await popup.close();
    await ask({ need: 'compare' });
    await page.reload();
    out.last_test = await page.locator('td[data-label="Health"]').first().innerText();

    await page.getByRole('link', { name: 'Test SAML', exact: true }).click();
    out.edit_text = await page.locator('main').innerText();
    out.certificate_link = await page.getByRole('link', { name: 'Download certificate' }).getAttribute('href');
    await shot(page, 'edit-saml');

    const user = watch(await (await browser.newContext({ viewport: DESKTOP })).newPage());
    await user.goto(`${gateway}/login`);
    await Promise.all([user.waitForURL(`${gateway}/`), user.getByRole('link', { name: /Sign in with Test SAML/ }).click()]);
    out.user_text = await user.locator('body').innerText();
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
  out.csp_violations = cspViolations;
  console.log(JSON.stringify(out));
} catch (err) {
  // Say where it stopped: the page's URL and text, and a screenshot of it.
  for (const ctx of browser.contexts()) {
    for (const p of ctx.pages()) {
      console.error(`page ${p.url()}:\n${await p.locator('body').innerText().catch(() => '')}`);
      await p.screenshot({ path: `${shots}/error.png`, fullPage: true }).catch(() => {});
    }
  }
  throw err;
} finally {
  await browser.close();
  // The test keeps our stdin open: let go of it, or node never exits.
  reader.close();
  process.stdin.destroy();
}
