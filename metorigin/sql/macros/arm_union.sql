{#
  Every model arm's lake table of one kind ('metrics' or 'predictions'), stacked by column name: a
  column an arm lacks is NULL in its rows. The arms and their tables come from metorigin/arms/
  (`arm_tables`, generated with the sources in models/results/arms.yml): a new arm joins Table 3
  without an edit here.
#}
{% macro arm_union(kind) %}
{%- for table in arm_tables()[kind] %}
{%- if not loop.first %}
union all by name
{%- endif %}
select * from {{ source('arms', table) }}
{%- endfor %}
{% endmacro %}
