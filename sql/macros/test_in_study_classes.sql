{#- The label is one of the study's two classes (the `label_classes` variable, from the study file). -#}
{% test in_study_classes(model, column_name) %}
{%- set classes = var('label_classes', []) -%}
select {{ column_name }}
from {{ model }}
where {% if classes %}{{ column_name }} not in ({% for c in classes %}'{{ c }}'{{ ", " if not loop.last }}{% endfor %}){% else %}false{% endif %}
{% endtest %}
