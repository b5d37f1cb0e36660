{#- The label is one of the study's two classes (the `label_classes` variable, from the study file),
    or one of the names in `also` (e.g. Table 1's `unlabelled` cohort). NULL passes: a patient whose
    label cell is empty is valid (unlabelled); a column that must hold a class adds `not_null`. -#}
{% test in_study_classes(model, column_name, also=[]) %}
{%- set classes = var('label_classes', []) + also -%}
select {{ column_name }}
from {{ model }}
where {% if classes %}{{ column_name }} not in ({% for c in classes %}'{{ c }}'{{ ", " if not loop.last }}{% endfor %}){% else %}false{% endif %}
{% endtest %}
