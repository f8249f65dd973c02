from django.urls import path

from rewards.views import RewardViewSet

urlpatterns = [
    path("rewards/claim", RewardViewSet.as_view({"post": "claim"}), name="rewards-claim"),
    path("rewards/history", RewardViewSet.as_view({"get": "history"}), name="rewards-history"),
]
