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

CONSENT = (
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Permissions requested · Sandbox identity provider</title>
"""
    + _STYLE
    + """</head>
<body><div class="box">
  <h1 id="idp-consent-title">Permissions requested</h1>
  <p class="small">Signed in as {{ upn }}.</p>
  <p>Mailbox Sync (sandbox app {{ client_id }}) wants to act as you on:</p>
  <ul id="idp-consent-scopes">{% for scope in scopes %}<li>{{ scope }}</li>{% endfor %}</ul>
  <p class="small">Accepting lets the app use these resources on your behalf until you or an
     administrator withdraws the consent.</p>
  <form method="post" action="{{ action }}">
    <input type="hidden" name="login" value="{{ handle }}">
    <button type="submit" id="idp-consent-accept" name="action" value="consent-accept">Accept</button>
    <button type="submit" id="idp-consent-decline" name="action" value="consent-decline">Cancel</button>
  </form>
</div></body></html>
"""
)

ADMIN_REQUIRED = (
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Administrator approval needed · Sandbox identity provider</title>
"""
    + _STYLE
    + """</head>
<body><div class="box">
  <h1 id="idp-admin-title">Administrator approval needed</h1>
  <p class="error" role="alert" id="idp-admin-message">AADSTS90094: Mailbox Sync needs
     permissions in your organization that only an administrator can grant.</p>
  <ul>{% for scope in scopes %}<li>{{ scope }}</li>{% endfor %}</ul>
  <p class="small">An administrator can approve the app for everyone at {{ admin_url }}.</p>
  <form method="post" action="{{ action }}">
    <input type="hidden" name="login" value="{{ handle }}">
    <button type="submit" id="idp-admin-back" name="action" value="admin-back">Return to the
      application without consent</button>
  </form>
</div></body></html>
"""
)

ADMIN_CONSENT = (
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Consent for your organization · Sandbox identity provider</title>
"""
    + _STYLE
    + """</head>
<body><div class="box">
  <h1 id="idp-adminconsent-title">Consent on behalf of your organization</h1>
  <p>Mailbox Sync (sandbox app {{ client_id }}) asks for its permissions (the sandbox's
     organizations, Global Discovery and the mailboxes through EWS) for every user of the
     sandbox tenant. Sign in as an administrator to accept.</p>
  {% if error %}<p class="error" role="alert" id="idp-error">{{ error }}</p>{% endif %}
  <form method="post" action="{{ action }}">
    <input type="hidden" name="client_id" value="{{ client_id }}">
    <input type="hidden" name="redirect_uri" value="{{ redirect_uri }}">
    <input type="hidden" name="state" value="{{ state }}">
    <label for="upn">Administrator</label>
    <input type="email" id="upn" name="upn" value="{{ upn }}" autocomplete="username" required>
    <label for="password">Password</label>
    <input type="password" id="password" name="password" autocomplete="current-password" required>
    <button type="submit" id="idp-adminconsent-accept" name="action" value="accept">Accept</button>
  </form>
</div></body></html>
"""
)

DEVICE = (
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Enter code · Sandbox identity provider</title>
"""
    + _STYLE
    + """</head>
<body><div class="box">
  <h1 id="idp-device-title">{{ title }}</h1>
  {% if error %}<p class="error" role="alert" id="idp-error">{{ error }}</p>{% endif %}
  {% if done %}<p id="idp-device-done">{{ done }}</p>{% else %}
  <p class="small">A program on a device asks to sign in as you (sandbox tenant {{ tenant }}).
     Enter the code it shows, then sign in. Only do this for a program you started.</p>
  <form method="post" action="{{ action }}">
    <label for="user_code">Code</label>
    <input type="text" id="user_code" name="user_code" value="{{ user_code }}" autocomplete="off" required>
    <label for="upn">Email, phone, or Skype</label>
    <input type="email" id="upn" name="upn" value="{{ upn }}" autocomplete="username" required>
    <label for="password">Password</label>
    <input type="password" id="password" name="password" autocomplete="current-password" required>
    {% if scopes %}<p class="small">It will act as you on:</p>
    <ul id="idp-device-scopes">{% for scope in scopes %}<li>{{ scope }}</li>{% endfor %}</ul>{% endif %}
    <button type="submit" id="idp-device-submit" name="action" value="sign-in">Sign in</button>
    <button type="submit" id="idp-device-cancel" name="action" value="cancel" formnovalidate>Cancel</button>
  </form>{% endif %}
</div></body></html>
"""
)
