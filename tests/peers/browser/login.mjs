// Drives a real browser (Debian's headless Chromium, through playwright-core) through a
// login: the gateway's login page, its button, the IdP's login form, and back to the
// gateway's signed-in page. Used by tests/it/browser.rs.
//
//   node login.mjs GATEWAY_URL ACCOUNT OUT.png
// ACCOUNT "-": the IdP asks nothing and posts back by itself (the SAML test IdP).
// Prints one JSON line: {"url": final URL, "text": body text, "buttons": [...]}; exit 1 on error.
import { chromium } from 'playwright-core';

const [gateway, account, shot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(15000);
  await page.goto(`${gateway}/login`);
  const buttons = await page.locator('a.button').allInnerTexts();
  await page.locator('a.button').first().click();
  if (account === '-') {
    // SAML: the IdP's page auto-submits its form to our ACS, which redirects home.
    await page.waitForURL(`${gateway}/`);
  } else {
    // The IdP's own login form (oidc-provider interactions in tests/peers/oidc).
    await page.locator('input[name="login"]').fill(account);
    await Promise.all([page.waitForURL(`${gateway}/**`), page.locator('form').first().evaluate((f) => f.submit())]);
  }
  await page.waitForLoadState('load');
  if (shot) await page.screenshot({ path: shot });
  console.log(JSON.stringify({ url: page.url(), text: await page.locator('body').innerText(), buttons }));
} finally {
  await browser.close();
}
