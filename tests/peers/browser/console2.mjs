// Drives a real browser (Debian's headless Chromium, through playwright-core) through the
// console's Users & Groups, Audit log, Signing keys and Apps pages and the end-user login
// page, and writes a desktop (1280 wide) and a phone (390 wide) screenshot of each page.
// Used by tests/it/console_pages.rs.
//
//   node console2.mjs GATEWAY_URL SHOTS_DIR
//
// The gateway has a connection "Acme Keycloak" (oidc-provider; accounts alice, an admin,
// and dana) with group sync, groups staff and Engineers, users bob, carol and erin.
// alice signs in to the console; invites dana into Engineers; dana signs in and shows as
// active; a group is made with bob picked by type-ahead (keyboard), and bob removed
// again; staff shows alice's synced membership without a Remove button; dana is disabled
// (her session ends) and removed; the audit log is filtered; a signing key rotated; an
// app registered (its secret shown once) and signed in through ("Signing in to …"); a
// refused login's "Try again". Prints one JSON line of what it saw; exit 1 on error.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';

const [gateway, shots] = process.argv.slice(2);
mkdirSync(shots, { recursive: true });

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
const cspViolations = [];
function watch(page) {
  page.setDefaultTimeout(15000);
  page.on('console', (m) => { if (/Content.Security.Policy/i.test(m.text())) cspViolations.push(m.text()); });
  return page;
}
async function fresh() {
  return watch(await (await browser.newContext({ viewport: DESKTOP })).newPage());
}
// The IdP's own login form (oidc-provider interactions in tests/peers/oidc).
async function idpLogin(page, account, until) {
  await page.locator('input[name="login"]').fill(account);
  await Promise.all([page.waitForURL(until), page.locator('form').first().evaluate((f) => f.submit())]);
}

try {
  const page = await fresh();
  await page.goto(`${gateway}/console`);
  await page.getByRole('link', { name: 'Sign in with Acme Keycloak' }).click();
  await idpLogin(page, 'alice', `${gateway}/console/connections`);

  // Users: invite dana into Engineers.
  await page.getByRole('link', { name: 'Users', exact: true }).click();
  await page.waitForURL('**/console/users');
  await shot(page, 'users');
  await page.getByRole('link', { name: '+ Invite user' }).click();
  await page.getByLabel('Email').fill('dana@example.test');
  await page.getByLabel('Engineers').check();
  await shot(page, 'invite');
  await Promise.all([page.waitForURL('**/console/users?done=invited*'), page.getByRole('button', { name: 'Send invitation' }).click()]);
  out.invited = await page.locator('.notice.success').innerText();
  out.dana_before = await page.locator('tr', { hasText: 'dana@example.test' }).innerText();
  await shot(page, 'users-invited');

  // dana signs in through the IdP, and shows as active.
  const dana = await fresh();
  await dana.goto(`${gateway}/login`);
  await dana.getByRole('link', { name: /Sign in with Acme Keycloak/ }).click();
  await idpLogin(dana, 'dana', `${gateway}/`);
  await page.goto(`${gateway}/console/users?q=dana`);
  out.dana_after = await page.locator('tr', { hasText: 'dana@example.test' }).innerText();
  await page.goto(`${gateway}/console/users`);
  await shot(page, 'users-active');

  // Groups: a new group, bob picked by type-ahead with the keyboard.
  await page.getByRole('link', { name: 'Groups', exact: true }).click();
  await page.waitForURL('**/console/groups');
  await shot(page, 'groups');
  await page.getByRole('link', { name: '+ New group' }).click();
  await page.getByLabel('Name').fill('Designers');
  await page.getByLabel('Description').fill('Product and UI design');
  await page.locator('#members-input').pressSequentially('bo', { delay: 40 });
  await page.locator('.suggestions li[role="option"]').first().waitFor();
  out.suggested = await page.locator('.suggestions li[role="option"]').evaluateAll((lis) => lis.map((li) => li.firstChild.textContent));
  await shot(page, 'group-new');
  await page.locator('#members-input').press('Enter');
  await page.locator('.picked li', { hasText: 'bob' }).waitFor();
  await Promise.all([page.waitForURL('**/console/groups/*?done=created'), page.getByRole('button', { name: 'Create group' }).click()]);
  out.group_members = await page.locator('table.members').innerText();
  await shot(page, 'group-created');
  await Promise.all([page.waitForURL('**?done=removed*'), page.getByRole('button', { name: 'Remove bob' }).click()]);
  out.after_removal = await page.locator('section[aria-labelledby="members-h"]').innerText();

  // staff: alice's membership came from the IdP's group sync: no Remove button.
  await page.goto(`${gateway}/console/groups`);
  await page.getByRole('link', { name: 'staff', exact: true }).click();
  out.staff_members = await page.locator('table.members').innerText();
  out.synced_remove_buttons = await page.locator('table.members button').count();
  await shot(page, 'group-synced');

  // dana disabled (her session ends), then removed.
  await page.goto(`${gateway}/console/users?q=dana`);
  await Promise.all([page.waitForURL('**done=disabled*'), page.getByRole('button', { name: 'Disable dana@example.test' }).click()]);
  await dana.goto(`${gateway}/`);
  out.dana_signed_out = dana.url();
  await page.getByRole('link', { name: 'Remove dana@example.test' }).click();
  await shot(page, 'user-remove');
  await Promise.all([page.waitForURL('**done=removed*'), page.getByRole('button', { name: 'Remove dana@example.test' }).click()]);
  out.removed = await page.locator('.notice.success').innerText();

  // Audit log: what was done to users.
  await page.getByRole('link', { name: 'Audit log' }).click();
  await page.getByLabel('Action').selectOption('user.');
  await Promise.all([page.waitForURL('**/console/audit?*action=user.*'), page.getByRole('button', { name: 'Filter' }).click()]);
  out.audit_filtered = await page.locator('table.audit').innerText();
  await shot(page, 'audit');

  // Signing keys: rotate.
  await page.getByRole('link', { name: 'Signing keys' }).click();
  await Promise.all([page.waitForURL('**/console/keys?done=rotated'), page.getByRole('button', { name: 'Rotate signing key' }).click()]);
  out.keys_after = await page.locator('tr[data-kid]').count();
  await shot(page, 'keys');

  // Apps: register one; its secret is on this page only.
  await page.getByRole('link', { name: 'Apps' }).click();
  await page.locator('.page-head').getByRole('link', { name: '+ Register app' }).click();
  await page.getByLabel('Name').fill('Acme Wiki');
  await page.getByLabel('Redirect URIs').fill(`${gateway}/app-callback`);
  await shot(page, 'apps-new');
  await page.getByRole('button', { name: 'Register app' }).click();
  await page.locator('#client-secret').waitFor();
  out.app_secret = await page.locator('#client-secret').innerText();
  const clientId = await page.locator('#client-id').innerText();
  await shot(page, 'app-created');
  await page.getByRole('link', { name: 'Done' }).click();
  await shot(page, 'apps');

  // A sign-in through the app: the login page names it.
  const user = await fresh();
  const authorize = `${gateway}/authorize?client_id=${encodeURIComponent(clientId)}&redirect_uri=${encodeURIComponent(`${gateway}/app-callback`)}&response_type=code&scope=openid&state=s1`;
  await user.goto(authorize);
  out.signing_in_to = await user.locator('.app').innerText();
  await shot(user, 'login-app');
  await user.getByRole('link', { name: /Sign in with Acme Keycloak/ }).click();
  await idpLogin(user, 'alice', `${gateway}/app-callback?**`);
  out.app_landed = user.url();

  // The plain login page, and a refused start whose "Try again" keeps the app.
  const anon = await fresh();
  await anon.goto(`${gateway}/login`);
  await shot(anon, 'login');
  await anon.goto(`${gateway}/login/con_nosuch?return_to=${encodeURIComponent(`/authorize?client_id=${clientId}`)}`);
  out.error_retry = await anon.getByRole('link', { name: 'Try again' }).getAttribute('href');
  await shot(anon, 'error');
} finally {
  out.csp_violations = cspViolations;
  console.log(JSON.stringify(out));
  await browser.close();
}
