"""The identity provider's few HTML pages (Jinja strings; Flask autoescapes them)."""

from __future__ import annotations

_STYLE = """
<style>
  body { font-family: system-ui, sans-serif; background: #f3f2f1; margin: 0; }
  .box { max-width: 26rem; margin: 4rem auto; background: #fff; padding: 2rem;
         box-shadow: 0 2px 6px rgba(0,0,0,.2); }
  h1 { font-size: 1.4rem; margin-top: 0; }
  label { display: block; margin: .8rem 0 .2rem; }
  input[type=text], input[type=email], input[type=password] { width: 100%; padding: .4rem;
         box-sizing: border-box; }
  .error { color: #a4262c; }
  .small { color: #605e5c; font-size: .85rem; }
  button { margin-top: 1rem; padding: .4rem 1.2rem; }
  table { border-collapse: collapse; font-size: .85rem; } td { padding: .1rem .5rem; }
</style>
"""

LOGIN = (
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in · Sandbox identity provider</title>
"""
    + _STYLE
    + """</head>
<body><div class="box">
  <h1 id="idp-title">Sign in to the sandbox</h1>
  <p class="small">Sandbox identity provider (tenant {{ tenant }}). This stands in for Microsoft
     Entra ID; only the sandbox's demo users exist here.</p>
  {% if error %}<p class="error" role="alert" id="idp-error">{{ error }}</p>{% endif %}
  <form method="post" action="{{ action }}">
    <input type="hidden" name="login" value="{{ handle }}">
    <label for="upn">Email, phone, or Skype</label>
    <input type="email" id="upn" name="upn" value="{{ upn }}" autocomplete="username" required>
    <label for="password">Password</label>
    <input type="password" id="password" name="password" autocomplete="current-password" required>
    <button type="submit" id="idp-submit" name="action" value="sign-in">Sign in</button>
    <button type="submit" id="idp-cancel" name="action" value="cancel" formnovalidate>Cancel</button>
  </form>
  <p class="small">Demo users:</p>
  <table>{% for user in users %}<tr><td>{{ user.upn }}</td><td>{{ user.password }}</td></tr>
  {% endfor %}</table>
</div></body></html>
"""
)

MESSAGE = (
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }} · Sandbox identity provider</title>
"""
    + _STYLE
    + """</head>
<body><div class="box">
  <h1>{{ title }}</h1>
  <p {% if error %}class="error" role="alert"{% endif %} id="idp-message">{{ message }}</p>
</div></body></html>
"""
)

FORM_POST = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Working…</title></head>
<body onload="document.forms[0].submit()">
  <form method="post" action="{{ action }}">
    {% for name, value in fields.items() %}
    <input type="hidden" name="{{ name }}" value="{{ value }}">{% endfor %}
    <noscript><button type="submit">Continue</button></noscript>
  </form>
</body></html>
"""
