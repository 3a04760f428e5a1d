// werk Web UI script, served from the binary. No inline script is allowed (CSP), so every
// behaviour is attached here: "select all" checkboxes and the dashboard's live chart.
(function () {
  'use strict';

  document.querySelectorAll('input[data-check-all]').forEach(function (box) {
    box.addEventListener('change', function () {
      box.form.querySelectorAll('input[name=key]').forEach(function (c) {
        c.checked = box.checked;
      });
    });
  });

  var svg = document.getElementById('live-chart');
  var select = document.getElementById('poll-interval');
  if (!svg || !select) { return; }

  var MIN_SECONDS = 2;    // never poll /stats more often than this
  var POINTS = 60;        // points kept on the chart
  try {
    var saved = Number(window.localStorage.getItem('werk.poll'));
    if (saved >= MIN_SECONDS && select.querySelector('option[value="' + saved + '"]')) {
      select.value = String(saved);
    }
  } catch (e) { /* storage may be off */ }

  var deltas = [];
  var last = null;
  var timer = null;

  function seconds() { return Math.max(MIN_SECONDS, Number(select.value) || 5); }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(poll, seconds() * 1000);
  }

  function setText(name, value) {
    document.querySelectorAll('[data-stat="' + name + '"]').forEach(function (el) {
      el.textContent = String(value);
    });
  }

  function update(s) {
    var f = s.faktory, sv = s.server;
    setText('processed', f.total_processed);
    setText('failed', f.total_failures);
    setText('busy', f.sets.working);
    setText('enqueued', f.total_enqueued);
    setText('retries', f.sets.retries);
    setText('scheduled', f.sets.scheduled);
    setText('dead', f.sets.dead);
    setText('connections', sv.connections);
    setText('memory', sv.used_memory_mb + ' MB');
    setText('uptime', sv.uptime + ' s');
    if (last) {
      deltas.push([Math.max(0, f.total_processed - last[0]), Math.max(0, f.total_failures - last[1])]);
      if (deltas.length > POINTS) { deltas.shift(); }
    }
    last = [f.total_processed, f.total_failures];
    draw();
    svg.setAttribute('data-polls', String(Number(svg.getAttribute('data-polls') || 0) + 1));
  }

  function draw() {
    var w = 800, h = 200, pad = 30;
    var max = 1;
    deltas.forEach(function (d) { max = Math.max(max, d[0], d[1]); });
    function line(i) {
      return deltas.map(function (d, x) {
        var px = pad + (w - pad - 4) * (deltas.length === 1 ? 1 : x / (deltas.length - 1));
        var py = h - pad - (h - 2 * pad) * d[i] / max;
        return px.toFixed(1) + ',' + py.toFixed(1);
      }).join(' ');
    }
    document.getElementById('live-processed').setAttribute('points', line(0));
    document.getElementById('live-failed').setAttribute('points', line(1));
    document.getElementById('live-max').textContent = String(max);
    document.getElementById('live-caption').textContent =
      'jobs per ' + seconds() + ' s, last ' + deltas.length + ' polls';
  }

  function poll() {
    fetch('/stats', { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) { return r.json(); })
      .then(update)
      .catch(function () { /* the next poll tries again */ })
      .then(schedule);
  }

  select.addEventListener('change', function () {
    try { window.localStorage.setItem('werk.poll', String(seconds())); } catch (e) { /* ignore */ }
    clearTimeout(timer);  // one polling loop only
    deltas = [];
    last = null;
    poll();
  });
  poll();
}());
