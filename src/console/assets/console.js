// ssogate console: the only script. Pages work without it; it adds copy buttons.
'use strict';
(function () {
  function copied(button) {
    var label = button.textContent;
    button.textContent = 'Copied';
    button.classList.add('done');
    setTimeout(function () { button.textContent = label; button.classList.remove('done'); }, 1500);
  }
  function fallback(text, button) {
    var area = document.createElement('textarea');
    area.value = text;
    area.setAttribute('readonly', '');
    area.className = 'visually-hidden';
    document.body.appendChild(area);
    area.select();
    try { if (document.execCommand('copy')) copied(button); } catch (e) { /* the value stays selectable */ }
    document.body.removeChild(area);
  }
  document.querySelectorAll('button[data-copy]').forEach(function (button) {
    button.hidden = false;
    button.addEventListener('click', function () {
      var text = button.getAttribute('data-copy');
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(function () { copied(button); }, function () { fallback(text, button); });
      } else {
        fallback(text, button);
      }
    });
  });
})();
