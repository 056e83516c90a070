// The sign-in answer's re-post from our own origin (see webapp/signin.py: the authority's
// cross-site post arrives without our SameSite=Strict cookie). A file, because the
// Content-Security-Policy refuses inline scripts and onload="" handlers.
"use strict";
(function () {
  const form = document.querySelector("form#bounce");
  if (form) {
    form.submit();
  }
})();
