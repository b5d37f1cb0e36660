"""The study report's HTML: one self-contained page (inline SVG figures, inline CSS, no script, no
font or image fetched from anywhere), so that it opens from a USB stick or a mail attachment."""

from __future__ import annotations

import jinja2

PAGE = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True).from_string(
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font-family: sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .85em; margin: .6em 0; }
th, td { border: 1px solid #ddd; padding: .25em .5em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
.provenance td:first-child { font-weight: bold; white-space: nowrap; }
.missing { background: #fff4e0; border-left: 4px solid #e69500; padding: .6em 1em; }
.note { color: #555; font-size: .85em; }
figure { margin: 1em 0; } figure svg { max-width: 100%; height: auto; }
figcaption { font-size: .9em; color: #444; max-width: 1000px; }
pre { background: #f6f6f6; padding: .6em; overflow-x: auto; font-size: .8em; white-space: pre-wrap; }
nav a { margin-right: 1em; }
.gallery { display: flex; flex-wrap: wrap; gap: .8em; } .gallery figure { margin: 0; width: 290px; }
.gallery img { width: 100%; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
{% if anonymous %}<p class="note">Shareable version: no images; patient, scan and lesion ids replaced by
sequence numbers.</p>{% endif %}
<table class="provenance" id="provenance">
{% for key, value in provenance %}<tr><td>{{ key }}</td><td>{{ value }}</td></tr>
{% endfor %}
</table>
<nav>{% for section in sections %}<a href="#{{ section.key }}">{{ section.title }}</a>{% endfor %}
<a href="#settings">study settings</a></nav>
{% for section in sections %}
<section id="{{ section.key }}">
<h2>{{ section.title }}</h2>
{% for why in section.missing %}<p class="missing">{{ why }}</p>
{% endfor %}
{% for item in section.items %}
{% if item.kind == "figure" %}
<figure id="figure-{{ item.name }}">{{ item.svg }}
<figcaption><b>{{ item.title }}.</b> {{ item.caption }} <span class="note">({{ item.name }}.svg, .png,
.csv)</span></figcaption></figure>
{% elif item.kind == "table" %}
<div class="table" id="table-{{ item.name }}"><h3>{{ item.title }}</h3>
{{ item.html }}
{% for note in item.notes %}<p class="note">{{ note }}</p>{% endfor %}
{% if item.sql %}<details><summary>SQL ({{ item.name }}.csv)</summary><pre>{{ item.sql }}</pre></details>{% endif %}
</div>
{% elif item.kind == "gallery" %}
<p>{{ item.text }}</p>
<div class="gallery" id="gallery-{{ item.name }}">{% for picture in item.pictures %}
<figure><img src="{{ picture.src }}" alt="{{ picture.caption }}"><figcaption>{{ picture.caption }}</figcaption></figure>
{% endfor %}</div>
{% else %}
<p>{{ item.text }}</p>
{% endif %}
{% endfor %}
</section>
{% endfor %}
<section id="settings"><h2>Study settings</h2>
<details><summary>every setting the results were computed with (study_settings)</summary>
<table>{% for key, value in settings %}<tr><td>{{ key }}</td><td>{{ value }}</td></tr>{% endfor %}</table>
</details></section>
</body>
</html>
"""
)


def render(**context) -> str:
    return PAGE.render(**context)
