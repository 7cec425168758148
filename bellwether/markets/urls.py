from django.urls import path

from .views import browse, trading

app_name = "markets"

urlpatterns = [
    path("markets/", browse.market_index, name="index"),
    path("markets/panels/home/", browse.home_strip, name="home-strip"),
    path("markets/panels/article/<id:article_id>/", browse.article_panel, name="article-panel"),
    path("markets/panels/section/<id:section_id>/", browse.section_panel, name="section-panel"),
    path("markets/<slug:slug>/", trading.market_detail, name="detail"),
    path("markets/<slug:slug>/chart.json", trading.chart_data, name="chart"),
    path("markets/<slug:slug>/quote/", trading.quote, name="quote"),
    path("markets/<slug:slug>/trade/", trading.trade, name="trade"),
    path("portfolio/", trading.portfolio, name="portfolio"),
]
