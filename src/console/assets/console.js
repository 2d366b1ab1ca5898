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

// The members picker: a type-ahead over GET /console/users/search. Each pick becomes a
// chip with a hidden `member` input; without the script the field takes names as text.
(function () {
  document.querySelectorAll('[data-picker]').forEach(function (box) {
    var input = box.querySelector('input[data-typeahead]');
    var picked = box.querySelector('.picked');
    if (!input || !picked) return;
    var url = input.getAttribute('data-typeahead');
    var list = document.createElement('ul');
    list.className = 'suggestions';
    list.id = input.id + '-suggestions';
    list.setAttribute('role', 'listbox');
    list.hidden = true;
    box.appendChild(list);
    input.setAttribute('role', 'combobox');
    input.setAttribute('aria-autocomplete', 'list');
    input.setAttribute('aria-controls', list.id);
    input.setAttribute('aria-expanded', 'false');
    input.placeholder = 'Type a name or email to add members';
    var items = [];
    var active = -1;
    var timer = null;
    var asked = 0;

    function chosen() {
      return Array.prototype.map.call(picked.querySelectorAll('input[name="member"]'), function (i) { return i.value; });
    }
    function removable(li) {
      var label = li.textContent;
      var b = document.createElement('button');
      b.type = 'button';
      b.textContent = '×';
      b.setAttribute('aria-label', 'Remove ' + label);
      b.addEventListener('click', function () { li.remove(); input.focus(); });
      li.appendChild(b);
    }
    Array.prototype.forEach.call(picked.children, removable);
    function close() {
      list.hidden = true;
      input.setAttribute('aria-expanded', 'false');
      input.removeAttribute('aria-activedescendant');
      active = -1;
    }
    function mark(i) {
      active = i;
      Array.prototype.forEach.call(list.children, function (li, j) { li.setAttribute('aria-selected', j === i ? 'true' : 'false'); });
      if (i >= 0 && list.children[i]) input.setAttribute('aria-activedescendant', list.children[i].id);
    }
    function pick(u) {
      if (chosen().indexOf(u.id) < 0) {
        var li = document.createElement('li');
        var hidden = document.createElement('input');
        hidden.type = 'hidden';
        hidden.name = 'member';
        hidden.value = u.id;
        li.appendChild(hidden);
        li.appendChild(document.createTextNode(u.username));
        removable(li);
        picked.appendChild(li);
      }
      input.value = '';
      close();
      input.focus();
    }
    function show(users) {
      list.textContent = '';
      var have = chosen();
      items = users.filter(function (u) { return have.indexOf(u.id) < 0; });
      if (!items.length) {
        var none = document.createElement('li');
        none.className = 'none';
        none.textContent = 'No user matches';
        list.appendChild(none);
      }
      items.forEach(function (u, i) {
        var li = document.createElement('li');
        li.id = list.id + '-' + i;
        li.setAttribute('role', 'option');
        li.appendChild(document.createTextNode(u.username));
        if (u.email && u.email !== u.username) {
          var s = document.createElement('small');
          s.textContent = u.email;
          li.appendChild(s);
        }
        li.addEventListener('mousedown', function (e) { e.preventDefault(); pick(u); });
        list.appendChild(li);
      });
      list.hidden = false;
      input.setAttribute('aria-expanded', 'true');
      mark(items.length ? 0 : -1);
    }
    function ask() {
      var q = input.value.trim();
      if (!q || q.indexOf(',') >= 0) { close(); return; }
      var n = ++asked;
      fetch(url + '?q=' + encodeURIComponent(q), { credentials: 'same-origin', headers: { Accept: 'application/json' } })
        .then(function (r) { return r.ok ? r.json() : []; })
        .then(function (users) { if (n === asked) show(users); })
        .catch(function () { close(); });
    }
    input.addEventListener('input', function () { clearTimeout(timer); timer = setTimeout(ask, 150); });
    input.addEventListener('keydown', function (e) {
      if (e.key === 'ArrowDown' && !list.hidden) { e.preventDefault(); mark(Math.min(active + 1, items.length - 1)); }
      else if (e.key === 'ArrowUp' && !list.hidden) { e.preventDefault(); mark(Math.max(active - 1, 0)); }
      else if (e.key === 'Enter' && !list.hidden && active >= 0 && items[active]) { e.preventDefault(); pick(items[active]); }
      else if (e.key === 'Escape') { close(); }
    });
    input.addEventListener('blur', function () { setTimeout(close, 100); });
  });
})();
