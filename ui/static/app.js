// tpo web UI: keeps the live regions of a page up to date. A region is an
// element with data-live; it is refreshed from data-events (server-sent
// events carrying its new HTML) when given, else by polling data-fragment.
// The HTML comes from the server's templates, which escape everything a
// model wrote; this file never builds markup from text.
'use strict';

(function () {
  var maxWait = 30000;

  // swap replaces a region's content, keeping the open or closed state of
  // its <details> elements that have ids.
  function swap(el, html) {
    var state = {};
    el.querySelectorAll('details[id]').forEach(function (d) { state[d.id] = d.open; });
    el.innerHTML = html;
    el.querySelectorAll('details[id]').forEach(function (d) {
      if (Object.prototype.hasOwnProperty.call(state, d.id)) { d.open = state[d.id]; }
    });
  }

  function isFinal(el) { return el.querySelector('[data-final]') !== null; }

  function setState(el, s) { el.setAttribute('data-state', s); }

  // poll fetches the region's fragment, waiting longer while nothing
  // changes, until the fragment says it is final.
  function poll(el) {
    var base = Number(el.getAttribute('data-poll')) || 2000;
    var wait = base;
    var last = null;
    setState(el, 'polling');
    function tick() {
      fetch(el.getAttribute('data-fragment'), { cache: 'no-store', credentials: 'same-origin' })
        .then(function (r) {
          if (r.status === 404) { throw new Error('gone'); }
          if (!r.ok) { return null; }
          return r.text();
        })
        .then(function (text) {
          if (text !== null && text !== last) {
            swap(el, text);
            last = text;
            wait = base;
          } else {
            wait = Math.min(wait * 2, maxWait);
          }
          if (isFinal(el)) { setState(el, 'final'); return; }
          setTimeout(tick, wait);
        })
        .catch(function (err) {
          if (err && err.message === 'gone') { setState(el, 'gone'); return; }
          wait = Math.min(wait * 2, maxWait);
          setTimeout(tick, wait);
        });
    }
    setTimeout(tick, wait);
  }

  // listen follows the region's event stream, and falls back to polling
  // when the stream cannot be opened or ends.
  function listen(el) {
    var es = new EventSource(el.getAttribute('data-events'));
    setState(el, 'live');
    es.addEventListener('update', function (e) { swap(el, e.data); });
    es.addEventListener('end', function () {
      es.close();
      if (isFinal(el)) { setState(el, 'final'); } else { poll(el); }
    });
    es.onerror = function () {
      if (es.readyState === EventSource.CLOSED) {
        if (isFinal(el)) { setState(el, 'final'); } else { poll(el); }
      }
    };
  }

  function start() {
    document.querySelectorAll('[data-live]').forEach(function (el) {
      if (isFinal(el)) { return; }
      if (el.getAttribute('data-events') && window.EventSource) { listen(el); } else { poll(el); }
    });
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();
