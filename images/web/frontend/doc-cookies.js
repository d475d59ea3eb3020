/*
 * window.docCookies: the cookie helper Tethys' app pages call (app_base.js remembers whether
 * the app navigation is open). No PyPI or Debian package carries the library Tethys loads
 * from a CDN, so the stack serves this implementation of the same calls:
 *   getItem(key), setItem(key, value, end, path, domain, secure), removeItem(key, path,
 *   domain), hasItem(key), keys().
 * `end` is a Date, a date string, or a number of seconds (Infinity: far future).
 */
(function () {
  "use strict";

  var FAR_FUTURE = "Fri, 31 Dec 9999 23:59:59 GMT";

  function entries() {
    return document.cookie ? document.cookie.split("; ") : [];
  }

  function expiry(end) {
    if (!end) { return ""; }
    if (end instanceof Date) { return "; expires=" + end.toUTCString(); }
    if (typeof end === "number") {
      return end === Infinity ? "; expires=" + FAR_FUTURE : "; max-age=" + end;
    }
    return "; expires=" + String(end);
  }

  function scope(path, domain) {
    return (domain ? "; domain=" + domain : "") + (path ? "; path=" + path : "");
  }

  var docCookies = {
    getItem: function (key) {
      if (!key) { return null; }
      var wanted = encodeURIComponent(key);
      var found = entries().filter(function (entry) { return entry.split("=")[0] === wanted; })[0];
      return found === undefined ? null : decodeURIComponent(found.slice(wanted.length + 1));
    },
    setItem: function (key, value, end, path, domain, secure) {
      if (!key || /^(?:expires|max-age|path|domain|secure)$/i.test(key)) { return false; }
      document.cookie = encodeURIComponent(key) + "=" + encodeURIComponent(value) + expiry(end) +
        scope(path, domain) + (secure ? "; secure" : "") + "; samesite=lax";
      return true;
    },
    removeItem: function (key, path, domain) {
      if (!this.hasItem(key)) { return false; }
      document.cookie = encodeURIComponent(key) + "=; expires=Thu, 01 Jan 1970 00:00:00 GMT" + scope(path, domain);
      return true;
    },
    hasItem: function (key) {
      return this.getItem(key) !== null;
    },
    keys: function () {
      return entries().map(function (entry) { return decodeURIComponent(entry.split("=")[0]); });
    }
  };

  window.docCookies = docCookies;
})();
