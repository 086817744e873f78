"""Operations on clusters: update (plan/apply), delete; later validate, rolling update, upgrade."""
